"""Planning benchmarks: real frames to a target return, or returns at given frame counts; one JSON line per seed.

    python benchmarks/planning.py --config conf/pendulum_pets.yaml --threshold -200 --seeds 0 1 2
    python benchmarks/planning.py --config conf/pendulum_pets_random_shooting.yaml --threshold -200
    python benchmarks/planning.py --config conf/cartpole_mcts.yaml --threshold 475
    python benchmarks/planning.py --config conf/half_cheetah_pets.yaml --report_at 50000 100000
    python benchmarks/planning.py --config conf/<ddpg config>.yaml --threshold -200   # any algorithm compares

With ``--threshold`` each seed is a ``fit`` that stops at the first evaluation reaching it (the record
says how many real frames that took). With ``--report_at`` the run goes to the largest frame count and
the record holds the evaluation return at each one (evaluations are scheduled on those frames). Every
record also holds the planner's mean seconds per action in collection and in evaluation, when the
algorithm plans, and the MLflow run id (experiment ``benchmark_<config>``) for the full curves.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from json_lines import stdout_to_stderr
from mlflow.tracking import MlflowClient
from solve_cartpole import solve_point

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.tracking import tracking_uri


def mean_metric(client: MlflowClient, run_id: str, key: str) -> float | None:
    """Mean of a metric's logged values (None when the run never logged it)."""
    values = [m.value for m in client.get_metric_history(run_id, key) if math.isfinite(m.value)]
    return round(sum(values) / len(values), 5) if values else None


def returns_at(client: MlflowClient, run_id: str, frames: list[int]) -> dict[str, float | None]:
    """The evaluation return logged at the first evaluation at or after each frame count."""
    history = sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)
    out: dict[str, float | None] = {}
    for target in frames:
        hit = next((m for m in history if m.step >= target), None)
        out[f"return_at_{target}"] = round(hit.value, 2) if hit else None
    return out


def run_seed(config: str, seed: int, overrides: list[str], threshold: float | None, report_at: list[int],
             eval_every: int) -> dict:
    """Fit ``config`` with ``seed``; return the JSON record."""
    experiment = f"benchmark_{Path(config).stem}"
    started = time.time()
    args = ["--config", config, "--seed_everything", str(seed), "--experiment_name", experiment,
            "--trainer.enable_progress_bar", "false", "--model.eval_every_frames", str(eval_every)]
    if threshold is not None:
        args += ["--trainer.callbacks+=mbrl_lightning.callbacks.StopAtReturn", f"--trainer.callbacks.threshold={threshold}"]
    if report_at:
        args += ["--model.total_frames", str(max(report_at))]
    with stdout_to_stderr():  # stdout carries only the JSON lines
        cli = MBRLCLI([*args, *overrides])
        cli.fit()
    run_id = cli.trainer.logger.run_id
    client = MlflowClient(tracking_uri())
    record: dict = {"config": config, "overrides": overrides, "seed": seed}
    if threshold is not None:
        record.update(threshold=threshold, **solve_point(run_id, threshold))
    if report_at:
        record.update(returns_at(client, run_id, report_at))
    curve = sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)
    record.update(
        eval_curve=[[m.step, m.value] for m in curve],  # the whole learning curve, for figures
        frames=cli.model.frames,
        planner_seconds_per_action=mean_metric(client, run_id, "planner/seconds_per_action"),
        eval_planner_seconds_per_action=mean_metric(client, run_id, "eval/planner_seconds_per_action"),
        total_seconds=round(time.time() - started, 1), run_id=run_id,
    )
    return record


def main() -> None:
    """Fit once per seed and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, default=None, help="stop at the first evaluation reaching this return")
    parser.add_argument("--report_at", type=int, nargs="*", default=[], help="frame counts to report returns at")
    parser.add_argument("--eval_every", type=int, default=None,
                        help="frames between evaluations (default: 200, or the gcd of --report_at)")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    if args.threshold is None and not args.report_at:
        parser.error("give --threshold or --report_at")
    eval_every = args.eval_every or (math.gcd(*args.report_at) if args.report_at else 200)
    for seed in args.seeds:
        record = run_seed(args.config, seed, args.overrides, args.threshold, args.report_at, eval_every)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
