"""Does DDP on N processes train to the same return as 1 process with the same total frames? JSON lines.

    python benchmarks/ddp_parity.py --config conf/cartpole_mbppo.yaml --frames 16384 --seeds 0 1 2 \
        --eval_every 1024 --threshold 500 > benchmarks/results/ddp_parity_cartpole_mbppo.jsonl
    # continue it: the (seed, processes) pairs already recorded are skipped
    python benchmarks/ddp_parity.py --config conf/cartpole_mbppo.yaml --frames 16384 --seeds 0 1 2 \
        --eval_every 1024 --threshold 500 --extend benchmarks/results/ddp_parity_cartpole_mbppo.jsonl

Each seed is trained twice through ``scripts/fit.py`` (a subprocess, as a user launches it): once
in one process and once with ``--trainer.strategy ddp --trainer.devices N --trainer.accelerator
cpu`` (gloo). A DDP run is the one-process run split over the ranks: ``total_frames`` and
``frames_per_batch`` count the frames of all ranks, each rank collecting ``frames_per_batch / N``
per update, so both modes see the same frames and take the same number of updates. The config's
callbacks stay (``conf/cartpole_mbppo.yaml`` stops at the first evaluation of 500). One line per
run holds its command, the evaluation curve, its best and final values, and the wall seconds; a
last line compares the two modes over the seeds recorded so far.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

REPO_ROOT = Path(__file__).resolve().parents[1]


def fit_command(config: str, frames: int, seed: int, processes: int, eval_every: int, extra: list[str],
                experiment: str = "ddp_parity") -> list[str]:
    """The ``scripts/fit.py`` command of one seed in ``processes`` processes."""
    command = [sys.executable, "scripts/fit.py", "--config", config,
               "--model.total_frames", str(frames), "--model.eval_every_frames", str(eval_every),
               "--seed_everything", str(seed), "--experiment_name", f"{experiment}_{processes}p",
               "--trainer.enable_progress_bar", "false", *extra]
    if processes > 1:
        command += ["--trainer.strategy", "ddp", "--trainer.devices", str(processes), "--trainer.accelerator", "cpu"]
    return command


def run(command: list[str], processes: int, seed: int, frames: int, threshold: float | None = None) -> dict:
    """Train one seed with ``command``; return its JSON record (its run found by experiment and seed tag)."""
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    seconds = time.time() - started
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(command[command.index("--experiment_name") + 1])
    run_info = client.search_runs([experiment.experiment_id], f"tags.seed = '{seed}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)[0]
    curve = sorted(client.get_metric_history(run_info.info.run_id, "eval/return_mean"), key=lambda m: m.step)
    record = {
        "label": f"{processes} process{'es (DDP)' if processes > 1 else ''}", "config": command[command.index("--config") + 1],
        "command": shlex.join(["python", *command[1:]]),
        "processes": processes, "seed": seed, "frames": frames,
        "frames_run": int(run_info.data.metrics["train/env_frames"]),
        "eval_curve": [[m.step, round(m.value, 1)] for m in curve],
        "best_eval": round(max(m.value for m in curve), 1), "final_eval": round(curve[-1].value, 1),
        "seconds": round(seconds, 1), "run_id": run_info.info.run_id,
    }
    if threshold is not None:
        record["solve_threshold"] = threshold
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/cartpole_dqn.yaml")
    parser.add_argument("--frames", type=int, default=16_384)
    parser.add_argument("--eval_every", type=int, default=4_096)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extend", type=Path, help="append to this record, skipping the runs it holds")
    parser.add_argument("--threshold", type=float, help="the return that counts as solved (records frames to reach it)")
    parser.add_argument("--experiment", default="ddp_parity",
                        help="MLflow experiments <this>_1p and <this>_Np (one per concurrent process)")
    parser.add_argument("extra", nargs="*", help="overrides passed to fit.py after --")
    args = parser.parse_args()
    out = args.extend.open("a") if args.extend else sys.stdout
    done = [json.loads(line) for line in args.extend.read_text().splitlines()] if args.extend else []
    records: dict[int, list[dict]] = {1: [], args.processes: []}
    for record in done:
        if record.get("processes") in records and record.get("frames") == args.frames:
            records[record["processes"]].append(record)
    for seed in args.seeds:
        for processes in records:
            if any(r["seed"] == seed for r in records[processes]):
                continue
            command = fit_command(args.config, args.frames, seed, processes, args.eval_every, args.extra, args.experiment)
            record = run(command, processes, seed, args.frames, args.threshold)
            records[processes].append(record)
            print(json.dumps(record), file=out, flush=True)
    summary = {
        f"{p}p": {
            "seeds": [r["seed"] for r in rs],
            "best_eval_mean": round(statistics.mean(r["best_eval"] for r in rs), 1),
            "final_eval_mean": round(statistics.mean(r["final_eval"] for r in rs), 1),
            "frames_run_mean": round(statistics.mean(r["frames_run"] for r in rs)),
            "seconds_mean": round(statistics.mean(r["seconds"] for r in rs), 1),
        }
        for p, rs in records.items() if rs
    }
    print(json.dumps({"summary": True, "config": args.config, "frames": args.frames, "modes": summary,
                      "command": shlex.join(["python", *sys.argv])}), file=out, flush=True)


if __name__ == "__main__":
    main()
