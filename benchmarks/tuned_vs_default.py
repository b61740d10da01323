"""A tuned config against its default over seeds it was not tuned on, one JSON line per run.

    python benchmarks/tuned_vs_default.py --default conf/cartpole_dqn.yaml \\
        --tuned tuned/cartpole_dqn/best.yaml --seeds 1 2 3 --jobs 2 -- --model.total_frames 10000

Both configs run through ``scripts/sweep.py`` into one MLflow experiment (finished runs are
skipped, so the command resumes); each record holds a run's evaluation curve, its last
evaluation and the first frame count whose evaluation reached ``--threshold``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from json_lines import stdout_to_stderr
from mlflow.tracking import MlflowClient

from mbrl_lightning.compare import history_until
from mbrl_lightning.tracking import tracking_uri
from mbrl_lightning.tuning.sweep import finished, main as sweep, parse_vary, plan_runs


def main() -> None:
    """Run the sweep, then print one record per run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--default", type=Path, required=True)
    parser.add_argument("--tuned", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--experiment", default="tuned_vs_default")
    parser.add_argument("--out", type=Path, default=Path("sweep_tuned_vs_default"))
    args, extra = parser.parse_known_args()
    extra = [item for item in extra if item != "--"]
    configs = [args.default, args.tuned]
    with stdout_to_stderr():
        code = sweep(["--configs", *map(str, configs), "--seeds", *map(str, args.seeds), "--jobs", str(args.jobs),
                      "--experiment", args.experiment, "--threshold", str(args.threshold), "--out", str(args.out),
                      "--", *extra])
    if code:
        raise SystemExit(code)
    client = MlflowClient(tracking_uri())
    for run in plan_runs(configs, args.seeds, parse_vary([]), args.experiment):
        (stored,) = finished(client, run)
        curve = history_until(client, stored.info.run_id, "eval/return_mean")
        reached = [int(step) for step, value in curve if value >= args.threshold]
        print(json.dumps({
            "benchmark": "tuned_vs_default", "config": str(run.config), "role": "default" if run.config == args.default else "tuned",
            "seed": run.seed, "overrides": extra, "mlflow_run_id": stored.info.run_id,
            "final_frames": int(curve[-1, 0]), "final_eval_return": float(curve[-1, 1]),
            "frames_to_threshold": reached[0] if reached else None, "threshold": args.threshold,
            "eval_curve": [[int(step), float(value)] for step, value in curve],
        }), flush=True)


if __name__ == "__main__":
    main()
