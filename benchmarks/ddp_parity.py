"""Does DDP on N processes train to the same return as 1 process with the same total frames? JSON lines.

    python benchmarks/ddp_parity.py --config conf/cartpole_dqn.yaml --frames 16384 --seeds 0 1 2

Each seed is trained twice through ``scripts/fit.py`` (a subprocess, as a user launches it): once
in one process and once with ``--trainer.strategy ddp --trainer.devices N --trainer.accelerator
cpu`` (gloo). The frame budget is global, so both see the same number of real frames. One line per
run holds the evaluation curve, its best and final values, and the wall seconds; a last line
compares the two modes over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

REPO_ROOT = Path(__file__).resolve().parents[1]


def run(config: str, frames: int, seed: int, processes: int, eval_every: int, extra: list[str]) -> dict:
    """Train one seed in ``processes`` processes; return its JSON record."""
    experiment = f"ddp_parity_{processes}p"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py"), "--config", config,
               "--model.total_frames", str(frames), "--model.eval_every_frames", str(eval_every),
               "--seed_everything", str(seed), "--experiment_name", experiment,
               "--trainer.enable_progress_bar", "false", *extra]
    if processes > 1:
        command += ["--trainer.strategy", "ddp", "--trainer.devices", str(processes), "--trainer.accelerator", "cpu"]
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.time() - started
    client = MlflowClient(tracking_uri())
    run_info = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                                  order_by=["attributes.start_time DESC"], max_results=1)[0]
    curve = sorted(client.get_metric_history(run_info.info.run_id, "eval/return_mean"), key=lambda m: m.step)
    return {
        "processes": processes, "seed": seed, "frames": frames,
        "eval_curve": {m.step: round(m.value, 1) for m in curve},
        "best_eval": round(max(m.value for m in curve), 1), "final_eval": round(curve[-1].value, 1),
        "seconds": round(seconds, 1), "run_id": run_info.info.run_id,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/cartpole_dqn.yaml")
    parser.add_argument("--frames", type=int, default=16_384)
    parser.add_argument("--eval_every", type=int, default=4_096)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("extra", nargs="*", help="overrides passed to fit.py after --")
    args = parser.parse_args()
    records = {1: [], args.processes: []}
    for seed in args.seeds:
        for processes in records:
            record = run(args.config, args.frames, seed, processes, args.eval_every, args.extra)
            records[processes].append(record)
            print(json.dumps(record), flush=True)
    summary = {
        f"{p}p": {
            "best_eval_mean": round(statistics.mean(r["best_eval"] for r in rs), 1),
            "final_eval_mean": round(statistics.mean(r["final_eval"] for r in rs), 1),
            "seconds_mean": round(statistics.mean(r["seconds"] for r in rs), 1),
        }
        for p, rs in records.items()
    }
    print(json.dumps({"config": args.config, "frames": args.frames, "seeds": args.seeds, "summary": summary}))


if __name__ == "__main__":
    main()
