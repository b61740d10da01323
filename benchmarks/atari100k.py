"""Atari-100k MsPacman: the raw game score at every evaluation, with agent steps/s and wall hours, as it goes.

    python benchmarks/atari100k.py --out benchmarks/results/atari100k_mspacman.jsonl          # conf/pacman.yaml (bf16), seed 0
    python benchmarks/atari100k.py --agents bf16 no_self_prediction --seeds 0 1 2 --out runs.jsonl
    python benchmarks/atari100k.py --extend benchmarks/results/atari100k_mspacman.jsonl --agent_steps 100000
    python benchmarks/atari100k.py --summarize benchmarks/results/atari100k_mspacman_precision.jsonl --at 50000 100000

One JSON line per evaluation (appended to ``--out`` and flushed at once, so a killed run keeps
what it measured): ``agent_steps``, ``emulator_frames`` (4 per agent step), ``score`` (mean raw game
score of ``eval_episodes`` full games, all lives, unclipped), ``score_std``, ``train_agent_steps_per_s``
(collection and learning, evaluations excluded), ``wall_hours`` (since the run first started,
evaluations and restarts included), ``precision`` (the trainer's; absent from records older than
the field) and ``run_id``. When a run reaches its budget a ``final`` line
follows, with the whole ``eval_curve`` (``[agent_steps, score]`` pairs, what benchmarks/figures.py draws); a ``summary`` line per agent aggregates the final scores over seeds (mean, IQM and a 95%
percentile-bootstrap interval of the mean). ``--extend FILE`` continues every run recorded in
FILE that stopped short of ``--agent_steps`` from its newest checkpoint, in the same MLflow run,
appending to the same file. ``--summarize FILE --at N ...`` prints, from the evaluation lines of
FILE (runs written by separate processes, stopped runs included), one summary per agent and budget
over the seeds that reached it: mean, IQM, 95% bootstrap interval of the mean. References at 100k agent steps (DIAMOND, arXiv 2405.12399): random
307, SPR 1,318, DreamerV3 1,327, SimPLe 1,480, DIAMOND 1,958, BBF 2,008.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from json_lines import stdout_to_stderr
from lightning.pytorch import Callback
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.stats import bootstrap_interval, iqm
from mbrl_lightning.tracking import tracking_uri

# The agents compared: conf/pacman.yaml (bf16, its trainer's precision), float32, and ablations
# (YAML keys changed on the command line). Each names its precision, so records written before
# bf16 became pacman.yaml's precision (agent "agent", float32 then) keep their meaning.
AGENTS = {
    "bf16": ["--trainer.precision", "bf16-mixed"],  # pacman.yaml as it is
    "fp32": ["--trainer.precision", "32-true"],  # the same agent in float32
    "agent": ["--trainer.precision", "32-true"],  # float32: the name of pacman.yaml's agent in records before bf16
    "no_self_prediction": ["--model.self_prediction_weight", "0", "--trainer.precision", "bf16-mixed"],
    "imagination_entropy": ["--model.entropy_beta", "0.1", "--trainer.precision", "bf16-mixed"],
    "c51": ["--model.atoms", "51", "--trainer.precision", "bf16-mixed"],  # SPR's distributional head
    # SPR's head and its intensity jitter after the shift: conf/atari100k.yaml's agent at pacman.yaml's K=2.
    "c51_intensity": ["--model.atoms", "51", "--model.augmentation", "shift_intensity", "--trainer.precision", "bf16-mixed"],
    # SR-SPR's resets (D'Oro et al. 2023) every 40k gradient steps, which at one step per agent step is one reset, at 40k.
    "resets": ["--model.reset_every_frames", "40000", "--trainer.precision", "bf16-mixed"],
    # Dopamine's warm-up for DER, SPR and BBF (conf/atari100k.yaml's): random actions for learning_starts steps, then
    # epsilon from 1 to 0 over 2,001 steps.
    "random_warmup": ["--model.warmup", "uniform", "--model.eps_init", "1.0", "--model.eps_end", "0.0",
                      "--model.eps_anneal_frames", "2001", "--trainer.precision", "bf16-mixed"],
    # SPR's network and targets (conf/atari100k.yaml's; SPR's release and BBF's SPR.gin): the Q head reads the
    # min-max renormalised latent, the self-prediction targets are renormalised as the predictions are, the
    # projection is the Q head's first layers (q_l1), double Q, and the self-prediction loss weighed as SPR
    # weighs it per step (5 times the mean over K steps of 2 - 2 cos: weight 5 on the sum of 1 - cos at K=2).
    "spr_network": ["--model.q_net.init_args.renormalize", "true",
                    "--model.latent_model.init_args.renormalize_targets", "true",
                    "--model.latent_model.init_args.projection", "q_head", "--model.double_dqn", "true",
                    "--model.self_prediction_weight", "5", "--trainer.precision", "bf16-mixed"],
}


class EvaluationRecords(Callback):
    """Append one JSON line to ``out`` after every evaluation of the run."""

    def __init__(self, out: Path, base: dict, wall_before: float) -> None:
        self.out = out
        self.base = base
        self.wall_before = wall_before
        self.started = time.time()
        self.seen: int | None = None

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        """Write a record when the module has evaluated since the last call."""
        if self.seen is None:
            self.seen = pl_module.evaluations - (1 if "eval/return_mean" in trainer.callback_metrics else 0)
        if pl_module.evaluations == self.seen:
            return
        self.seen = pl_module.evaluations
        metrics = trainer.callback_metrics
        frames = pl_module.frames
        write(self.out, {
            **self.base, "agent_steps": frames, "emulator_frames": frames * pl_module.env.frame_skip,
            "score": float(metrics["eval/return_mean"]), "score_std": float(metrics["eval/return_std"]),
            "eval_episodes": pl_module.eval_episodes, "eval_max_steps": pl_module.eval_max_steps,
            "train_agent_steps_per_s": round(frames / max(pl_module.train_seconds, 1e-9), 2),
            "train_hours": round(pl_module.train_seconds / 3600, 3),
            "wall_hours": round((self.wall_before + time.time() - self.started) / 3600, 3),
            "run_id": trainer.logger.run_id,
        })


def write(out: Path, record: dict) -> None:
    """Append ``record`` as one line and flush it."""
    with out.open("a") as lines:
        lines.write(json.dumps(record) + "\n")


def run(config: str, agent: str, seed: int, agent_steps: int, eval_every: int, eval_episodes: int,
        overrides: list[str], out: Path, resume: dict | None = None) -> dict:
    """Fit one agent and seed up to ``agent_steps`` (continuing the run of record ``resume``); return its final record."""
    args = ["--config", config, "--seed_everything", str(seed), "--experiment_name", "benchmark_atari100k",
            "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]",
            "--model.total_frames", str(agent_steps), "--model.eval_every_frames", str(eval_every),
            "--model.eval_episodes", str(eval_episodes), *AGENTS[agent], *overrides]
    if resume is None:
        args += ["--run_name", f"{agent}-s{seed}"]
    else:
        args += ["--ckpt_path", f"runs:/{resume['run_id']}"]
    base = {"agent": agent, "seed": seed, "config": config, "overrides": overrides}
    wall_before = 3600 * resume["wall_hours"] if resume else 0.0
    records = EvaluationRecords(out, base, wall_before)
    with stdout_to_stderr():
        cli = MBRLCLI(args)
        base["precision"] = str(cli.trainer.precision)  # the precision it ran in, whatever the config's default
        cli.trainer.callbacks.append(records)
        cli.fit()
    model = cli.model
    history = MlflowClient(tracking_uri()).get_metric_history(cli.trainer.logger.run_id, "eval/return_mean")
    final = {**base, "final": True, "agent_steps": model.frames, "budget": agent_steps,
             "eval_curve": sorted([m.step, m.value] for m in history),
             "score": float(cli.trainer.callback_metrics["eval/return_mean"]),
             "train_agent_steps_per_s": round(model.frames / max(model.train_seconds, 1e-9), 2),
             "wall_hours": round((wall_before + time.time() - records.started) / 3600, 3),
             "run_id": cli.trainer.logger.run_id}
    write(out, final)
    return final


def latest_records(path: Path) -> list[dict]:
    """The newest record of each (agent, seed) in ``path``."""
    latest: dict[tuple[str, int], dict] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "summary" not in record:
            latest[record["agent"], record["seed"]] = record
    return list(latest.values())


def summarize(out: Path, agent: str, finals: list[dict]) -> None:
    """Mean, IQM and 95% bootstrap interval over seeds of the final scores of ``agent``."""
    scores = np.array([r["score"] for r in finals])
    low, high = bootstrap_interval(scores)
    write(out, {"summary": agent, "seeds": [r["seed"] for r in finals], "agent_steps": [r["agent_steps"] for r in finals],
                "score_mean": round(float(scores.mean()), 1), "score_iqm": round(float(iqm(scores)), 1),
                "score_ci95": [round(float(low), 1), round(float(high), 1)],
                "train_agent_steps_per_s_mean": round(float(np.mean([r["train_agent_steps_per_s"] for r in finals])), 2),
                "wall_hours_mean": round(float(np.mean([r["wall_hours"] for r in finals])), 2)})


def scores_at(path: Path, budget: int) -> dict[tuple[str, tuple[str, ...]], list[dict]]:
    """Per (agent, overrides): the evaluation at ``budget`` agent steps of the newest run of each seed that reached it."""
    newest: dict[tuple[str, tuple[str, ...], int], tuple[str, dict | None]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "summary" in record or record.get("final"):
            continue
        key = (record["agent"], tuple(record.get("overrides") or []), record["seed"])
        run_id, at_budget = newest.get(key, (None, None))
        if record["run_id"] != run_id:  # a new run of this seed supersedes the old one
            at_budget = None
        if record["agent_steps"] == budget:
            at_budget = record
        newest[key] = (record["run_id"], at_budget)
    at: dict[tuple[str, tuple[str, ...]], list[dict]] = {}
    for (agent, overrides, _), (_, record) in newest.items():
        if record is not None:
            at.setdefault((agent, overrides), []).append(record)
    return at


def summarize_file(path: Path, budgets: list[int]) -> None:
    """Print one summary line per (agent, overrides, budget) over the seeds whose runs reached the budget."""
    for budget in budgets:
        for (agent, overrides), records in scores_at(path, budget).items():
            scores = np.array([r["score"] for r in records])
            low, high = bootstrap_interval(scores)
            print(json.dumps({
                "summary": agent, "overrides": list(overrides), "agent_steps": budget,
                "seeds": [r["seed"] for r in records], "scores": [round(float(v), 1) for v in scores],
                "score_mean": round(float(scores.mean()), 1), "score_iqm": round(float(iqm(scores)), 1),
                "score_ci95": [round(float(low), 1), round(float(high), 1)],
                "train_agent_steps_per_s_mean": round(float(np.mean([r["train_agent_steps_per_s"] for r in records])), 2),
                "wall_hours_mean": round(float(np.mean([r["wall_hours"] for r in records])), 2)}))


def main() -> None:
    """Run (or continue) every agent for every seed, recording every evaluation."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/pacman.yaml")
    parser.add_argument("--agents", nargs="+", choices=list(AGENTS), default=["bf16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--agent_steps", type=int, default=100_000, help="training budget (100k = Atari-100k)")
    parser.add_argument("--eval_every", type=int, default=10_000, help="agent steps between evaluations")
    parser.add_argument("--eval_episodes", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/atari100k_mspacman.jsonl"))
    parser.add_argument("--extend", type=Path, metavar="FILE", help="continue the runs recorded in FILE (appends to it)")
    parser.add_argument("--summarize", type=Path, metavar="FILE", help="print summaries of the runs in FILE at --at and exit")
    parser.add_argument("--at", type=int, nargs="+", default=[100_000], help="agent-step budgets --summarize reads")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    if args.summarize:
        summarize_file(args.summarize, args.at)
        return
    if args.extend:
        for record in latest_records(args.extend):
            if record["agent_steps"] < args.agent_steps:
                run(record["config"], record["agent"], record["seed"], args.agent_steps, args.eval_every,
                    args.eval_episodes, record["overrides"], args.extend, resume=record)
        return
    for agent in args.agents:
        finals = [run(args.config, agent, seed, args.agent_steps, args.eval_every, args.eval_episodes, args.overrides, args.out)
                  for seed in args.seeds]
        summarize(args.out, agent, finals)


if __name__ == "__main__":
    main()
