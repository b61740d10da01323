"""Env frames and wall seconds to solve CartPole-v1 (eval return >= 475), one JSON line per seed.

    python benchmarks/solve_cartpole.py --config conf/cartpole_dqn.yaml --seeds 0 1 2
    python benchmarks/solve_cartpole.py --config conf/cartpole_dqn.yaml -- --model.double_dqn=true

Each seed is a ``fit`` through the CLI that stops at the first solving evaluation, logged to the
MLflow experiment ``benchmark_<config>``; the solve point is read back from the run's
``eval/return_mean`` history. Frames are counted at evaluation points (``--eval_every`` apart).
``seconds_to_solve`` runs from the MLflow run's start to that evaluation; ``train_seconds_to_solve``
is the time spent collecting and learning until then (``train/seconds``: evaluations excluded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from json_lines import stdout_to_stderr
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.tracking import tracking_uri

SOLVED_RETURN = 475.0


def solve_point(run_id: str, threshold: float) -> dict:
    """Frames, wall seconds and training seconds at the first evaluation reaching ``threshold``."""
    client = MlflowClient(tracking_uri())
    run = client.get_run(run_id)
    history = sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)
    train_seconds = {m.step: m.value for m in client.get_metric_history(run_id, "train/seconds")}
    point = {"solved": False, "frames_to_solve": None, "seconds_to_solve": None, "train_seconds_to_solve": None,
             "best_eval_return": max((m.value for m in history), default=None)}
    for metric in history:
        if metric.value >= threshold:
            point.update(solved=True, frames_to_solve=metric.step,
                         seconds_to_solve=round((metric.timestamp - run.info.start_time) / 1000.0, 1),
                         train_seconds_to_solve=round(train_seconds[metric.step], 1))
            break
    return point


def run_seed(config: str, seed: int, overrides: list[str], threshold: float = SOLVED_RETURN,
             eval_every: int = 512, experiment: str | None = None) -> dict:
    """Fit ``config`` with ``seed`` until solved or out of budget; return the JSON record."""
    experiment = experiment or f"benchmark_{Path(config).stem}"
    started = time.time()
    fit_args = ["--config", config, "--seed_everything", str(seed), "--experiment_name", experiment,
                "--trainer.enable_progress_bar", "false", "--model.eval_every_frames", str(eval_every),
                "--trainer.callbacks+=mbrl_lightning.callbacks.StopAtReturn",
                f"--trainer.callbacks.threshold={threshold}", *overrides]
    with stdout_to_stderr():  # stdout carries only the JSON lines
        cli = MBRLCLI(fit_args)
        cli.fit()
    run_id = cli.trainer.logger.run_id
    return {
        "config": config, "overrides": overrides, "seed": seed, **solve_point(run_id, threshold),
        "total_seconds": round(time.time() - started, 1), "run_id": run_id,
    }


def main() -> None:
    """Fit once per seed and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/cartpole_dqn.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, default=SOLVED_RETURN)
    parser.add_argument("--eval_every", type=int, default=512, help="frames between evaluations (the resolution)")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    for seed in args.seeds:
        print(json.dumps(run_seed(args.config, seed, args.overrides, args.threshold, args.eval_every)), flush=True)


if __name__ == "__main__":
    main()
