"""Env frames and wall seconds to solve CartPole-v1 (eval return >= 475), one JSON line per seed.

    python benchmarks/solve_cartpole.py --config conf/cartpole_dqn.yaml --seeds 0 1 2

Each seed is a ``fit`` through the CLI that stops at the first solving evaluation, logged to the
MLflow experiment ``benchmark_<config>``; the solve point is read back from the run's
``eval/return_mean`` history. Frames are counted at evaluation points (``--eval_every`` apart).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import main as fit_main
from mbrl_lightning.tracking import tracking_uri

SOLVED_RETURN = 475.0


def solve_point(run_id: str, threshold: float) -> tuple[int | None, float | None, float]:
    """(frames, wall seconds) of the first evaluation at or above ``threshold``, and the best return."""
    client = MlflowClient(tracking_uri())
    run = client.get_run(run_id)
    history = sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)
    best = max((m.value for m in history), default=float("nan"))
    for metric in history:
        if metric.value >= threshold:
            return metric.step, (metric.timestamp - run.info.start_time) / 1000.0, best
    return None, None, best


def main() -> None:
    """Fit once per seed and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/cartpole_dqn.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, default=SOLVED_RETURN)
    parser.add_argument("--eval_every", type=int, default=512, help="frames between evaluations (the resolution)")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, e.g. --model.total_frames=60000")
    args = parser.parse_args()
    experiment = f"benchmark_{Path(args.config).stem}"
    client = MlflowClient(tracking_uri())
    for seed in args.seeds:
        started = time.time()
        fit_args = ["--config", args.config, "--seed_everything", str(seed), "--experiment_name", experiment,
                    "--trainer.enable_progress_bar", "false", "--model.eval_every_frames", str(args.eval_every),
                    "--trainer.callbacks+=mbrl_lightning.callbacks.StopAtReturn",
                    f"--trainer.callbacks.threshold={args.threshold}", *args.overrides]
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON lines
            code = fit_main(fit_args)
        if code != 0:
            raise SystemExit(f"fit failed for seed {seed}")
        run = client.search_runs(
            [client.get_experiment_by_name(experiment).experiment_id],
            order_by=["attributes.start_time DESC"], max_results=1,
        )[0]
        frames, seconds, best = solve_point(run.info.run_id, args.threshold)
        print(json.dumps({
            "config": args.config, "seed": seed, "solved": frames is not None,
            "frames_to_solve": frames, "seconds_to_solve": None if seconds is None else round(seconds, 1),
            "best_eval_return": best, "total_seconds": round(time.time() - started, 1),
            "run_id": run.info.run_id,
        }), flush=True)


if __name__ == "__main__":
    main()
