"""Does a config's final policy hold its best? One JSON line per (config, seed), as ``make fit`` runs it.

    python benchmarks/final_vs_best.py --config conf/cartpole_mbppo.yaml --seeds 0 1 2 3 4
    python benchmarks/final_vs_best.py --config conf/cartpole_ppo.yaml --seeds 3 -- --model.total_frames=50000
    python benchmarks/final_vs_best.py --summary      # the records so far, one Markdown row per config

Each seed is a plain ``scripts/fit.py --config CONFIG --seed_everything SEED`` in a subprocess (the
config's own schedule, evaluations and stopping rule; nothing added), logged to the MLflow
experiment ``final_vs_best_<config>`` of the folder it runs in. The record gives the run's best and
final ``eval/return_mean`` (read back from MLflow), whether the final one is within 5% of the best
(``within_5pct``; for negative returns, of the best's magnitude), and what ``scripts/evaluate.py``
reports for the run's ``last.ckpt`` over ``--episodes`` episodes on its own seeds ``0..episodes-1``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

REPO = Path(__file__).resolve().parents[1]
_MEAN = re.compile(r"return mean (-?[\d.]+)")
_RETURNS = re.compile(r"returns \(.*\): (.*)")
_RUN = re.compile(r"MLflow run: (\w+)")


def evaluate_last(run_id: str, episodes: int) -> dict:
    """``scripts/evaluate.py`` on the run's ``last.ckpt``: its mean and per-episode returns."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--ckpt_path", f"checkpoints/{run_id}/last.ckpt",
         "--episodes", str(episodes)], capture_output=True, text=True, check=True,
    )
    returns = [float(value) for value in _RETURNS.search(result.stdout).group(1).split(", ")]
    return {"last_ckpt_return_mean": float(_MEAN.search(result.stdout).group(1)), "last_ckpt_returns": returns}


def run_seed(config: str, seed: int, overrides: list[str], episodes: int) -> dict:
    """Fit ``config`` with ``seed`` through the command line; return the JSON record."""
    experiment = f"final_vs_best_{Path(config).stem}"
    started = time.time()
    fit = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fit.py"), "--config", str(REPO / config), "--seed_everything",
         str(seed), "--experiment_name", experiment, "--trainer.enable_progress_bar", "false", *overrides],
        capture_output=True, text=True,
    )
    if fit.returncode != 0:
        return {"config": config, "seed": seed, "overrides": overrides, "error": fit.stderr.strip().splitlines()[-1:]}
    run_id = _RUN.search(fit.stdout).group(1)
    client = MlflowClient(tracking_uri())
    history = sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)
    best = max(history, key=lambda m: m.value)
    final = history[-1]
    return {
        "config": config, "overrides": overrides, "seed": seed, "run_id": run_id,
        "command": " ".join(["python benchmarks/final_vs_best.py", "--config", config, "--seeds", str(seed),
                             "--episodes", str(episodes), *(["--", *overrides] if overrides else [])]),
        "frames": int(client.get_run(run_id).data.metrics["train/env_frames"]),
        "best_eval_return": best.value, "best_frame": best.step,
        "final_eval_return": final.value, "final_frame": final.step,
        "within_5pct": final.value >= best.value - 0.05 * abs(best.value),
        "evaluations": [round(m.value, 1) for m in history],
        **evaluate_last(run_id, episodes),
        "fit_seconds": round(time.time() - started, 1),
    }


def summary(records: list[Path]) -> str:
    """A Markdown table of the records: per config, each seed's final and best evaluation and last.ckpt's mean."""
    by_config: dict[str, list[dict]] = {}
    for path in records:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "final_eval_return" in record and not record["overrides"]:
                by_config.setdefault(record["config"], []).append(record)
    rows = ["| config | seeds | final / best per seed | final within 5% of best | `last.ckpt` mean (episodes) |",
            "| --- | --- | --- | --- | --- |"]
    for config, runs in sorted(by_config.items()):
        runs.sort(key=lambda r: r["seed"])
        pairs = ", ".join(f"{r['final_eval_return']:.4g} / {r['best_eval_return']:.4g}" for r in runs)
        within = sum(r["within_5pct"] for r in runs)
        last = ", ".join(f"{r['last_ckpt_return_mean']:.4g} ({len(r['last_ckpt_returns'])})" for r in runs)
        rows.append(f"| `{config}` | {', '.join(str(r['seed']) for r in runs)} | {pairs} | {within} of {len(runs)} | {last} |")
    return "\n".join(rows)


def main() -> None:
    """Fit once per seed and print one JSON line each (or, with --summary, tabulate the records)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/cartpole_mbppo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=10, help="episodes of the last.ckpt evaluation")
    parser.add_argument("--summary", action="store_true", help="print the table of benchmarks/results/final_vs_best_*")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    if args.summary:
        print(summary(sorted((REPO / "benchmarks" / "results").glob("final_vs_best_*.jsonl"))))
        return
    for seed in args.seeds:
        print(json.dumps(run_seed(args.config, seed, args.overrides, args.episodes)), flush=True)


if __name__ == "__main__":
    main()
