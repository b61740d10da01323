"""Atari-100k MsPacman: raw game score after a budget of agent steps, and training throughput.

    python benchmarks/atari100k.py                                   # both agents, 100k agent steps, seeds 0 1 2
    python benchmarks/atari100k.py --agent_steps 20000 --seeds 0 --agents dqn imagination

One JSON line per agent and seed, then one summary line per agent. ``score`` is the raw game
score (unclipped, all lives) of the final evaluation, mean over its episodes; the summary
averages it over seeds (equal episodes per seed, so this is the mean over seeds and episodes).
One agent step is ``frame_skip`` = 4 emulator frames: 100k agent steps = 400k frames.
``train_fps`` is agent steps per second of collecting and learning (evaluations excluded),
``train_emulator_fps`` the same in emulator frames. References at 100k agent steps: random 307,
SimPLe 1,480, DreamerV3 about 1,400, DIAMOND 1,958.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from json_lines import stdout_to_stderr
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.tracking import tracking_uri

CONFIG = "conf/atari100k.yaml"
# The two agents of the benchmark: the same config, with and without the imagination bonus.
AGENTS = {
    "dqn": ["--model.entropy_beta", "0", "--model.model_learning", "null"],
    "imagination": [],
}


def last(client: MlflowClient, run_id: str, key: str) -> float | None:
    """The value of ``key`` at the highest step, or None when never logged."""
    history = client.get_metric_history(run_id, key)
    return max(history, key=lambda m: m.step).value if history else None


def run(agent: str, seed: int, agent_steps: int, eval_episodes: int, overrides: list[str]) -> dict:
    """Fit one agent for ``agent_steps`` and return its JSON record."""
    started = time.time()
    args = ["--config", CONFIG, "--seed_everything", str(seed), "--experiment_name", "benchmark_atari100k",
            "--run_name", f"{agent}-s{seed}-{agent_steps}", "--trainer.enable_progress_bar", "false",
            "--model.total_frames", str(agent_steps), "--model.eval_episodes", str(eval_episodes),
            "--checkpoint.every_n_frames", str(agent_steps), "--trainer.callbacks", "[]",
            *AGENTS[agent], *overrides]
    with stdout_to_stderr():  # stdout carries only the JSON lines
        cli = MBRLCLI(args)
        cli.fit()
    run_id = cli.trainer.logger.run_id
    client = MlflowClient(tracking_uri())
    frames = cli.model.frames
    train_seconds = cli.model.train_seconds
    return {
        "agent": agent, "seed": seed, "agent_steps": frames, "emulator_frames": frames * cli.model.env.frame_skip,
        "score": last(client, run_id, "eval/return_mean"), "score_std": last(client, run_id, "eval/return_std"),
        "eval_episodes": eval_episodes, "eval_max_steps": cli.model.eval_max_steps,
        "train_fps": round(frames / train_seconds, 2),
        "train_emulator_fps": round(frames * cli.model.env.frame_skip / train_seconds, 2),
        "train_seconds": round(train_seconds, 1), "total_seconds": round(time.time() - started, 1),
        "overrides": overrides, "run_id": run_id,
    }


def main() -> None:
    """Run every agent for every seed; print the records and a summary per agent."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["dqn", "imagination"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agent_steps", type=int, default=100_000, help="training budget (100k = Atari-100k)")
    parser.add_argument("--eval_episodes", type=int, default=8)
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    for agent in args.agents:
        records = []
        for seed in args.seeds:
            records.append(run(agent, seed, args.agent_steps, args.eval_episodes, args.overrides))
            print(json.dumps(records[-1]), flush=True)
        scores = [r["score"] for r in records if r["score"] is not None]
        print(json.dumps({
            "summary": agent, "agent_steps": args.agent_steps, "seeds": args.seeds,
            "score_mean": round(statistics.fmean(scores), 1) if scores else None,
            "score_std_over_seeds": round(statistics.pstdev(scores), 1) if scores else None,
            "train_fps_mean": round(statistics.fmean(r["train_fps"] for r in records), 2),
        }), flush=True)


if __name__ == "__main__":
    main()
