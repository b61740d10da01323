"""Return at fixed env-frame budgets for DDPG vs DDPG with imagination entropy on pybullet, JSON lines.

    python benchmarks/continuous_control.py --envs half_cheetah ant --seeds 0 1 2 --budgets 100000 300000
    python benchmarks/continuous_control.py --envs half_cheetah --seeds 0 --budgets 20000 --eval_every 5000
    python benchmarks/continuous_control.py --summarize runs.jsonl   # summaries of records printed earlier
    python benchmarks/continuous_control.py --extend runs.jsonl --budgets 300000 >> runs.jsonl  # train them longer

Seeds may run as separate processes (in parallel, or one at a time as a machine frees up); their
saved record lines are summarised together with ``--summarize``. Long budgets can be reached in
pieces: ``--extend`` resumes each recorded run from its last checkpoint (in the same MLflow run,
exactly as if it had never stopped) up to the largest budget and prints its new record, which
replaces the old one in ``--summarize`` (the last record of an (env, algorithm, seed) counts).

Each (env, algorithm, seed) is a ``fit`` of ``conf/<env>.yaml`` (DDPG) or ``conf/<env>_imagination.yaml``
through the CLI with ``total_frames`` = the largest budget, logged to the MLflow experiment
``benchmark_<config>``. The return at a budget is the deterministic evaluation (``eval/return_mean``)
logged at that frame count (on the collected batch that crosses it). ``train_fps`` is real env frames per second of training (collection and
learning, evaluations excluded: frames / ``train/seconds``). One line per run, then one summary line
per (env, algorithm, budget) with the mean over seeds and a 95% Student-t interval (null for one seed),
next to the rl-baselines3-zoo DDPG score after 1M frames.
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

ALGORITHMS = {"ddpg": "", "ddpg_imagination": "_imagination"}
# rl-baselines3-zoo benchmark, DDPG after 1M frames.
ZOO_DDPG_1M = {"half_cheetah": 2078.0, "ant": 2399.0}
# Two-sided 97.5% quantiles of Student's t by degrees of freedom (1.96 beyond the table).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def run(env: str, algorithm: str, seed: int, budgets: list[int], eval_every: int, eval_episodes: int,
        overrides: list[str], resume: dict | None = None) -> dict:
    """Fit one seed up to the largest budget (continuing the run of record ``resume``); return its record."""
    config = f"conf/{env}{ALGORITHMS[algorithm]}.yaml"
    started = time.time()
    args = ["--config", config, "--seed_everything", str(seed), "--experiment_name", f"benchmark_{env}{ALGORITHMS[algorithm]}",
            "--trainer.enable_progress_bar", "false", "--model.total_frames", str(max(budgets)),
            "--model.eval_every_frames", str(eval_every), "--model.eval_episodes", str(eval_episodes), *overrides]
    if resume is not None:
        args += ["--ckpt_path", f"runs:/{resume['run_id']}"]
    with stdout_to_stderr():  # stdout carries only the JSON lines
        cli = MBRLCLI(args)
        cli.fit()
    run_id = cli.trainer.logger.run_id
    client = MlflowClient(tracking_uri())
    evals = {m.step: m.value for m in client.get_metric_history(run_id, "eval/return_mean")}
    seconds = max(client.get_metric_history(run_id, "train/seconds"), key=lambda m: m.step)
    # Evaluations run on the batch that crosses a multiple of eval_every, so at most one batch past it.
    returns = {str(b): next((evals[step] for step in sorted(evals) if step >= b), None) for b in budgets}
    return {"env": env, "algorithm": algorithm, "config": config, "overrides": overrides, "seed": seed,
            "returns": returns, "eval_curve": sorted(evals.items()),
            "train_fps": round(seconds.step / max(seconds.value, 1e-9), 1),
            "total_seconds": round(time.time() - started + (resume or {}).get("total_seconds", 0.0), 1),
            "run_id": run_id}


def latest_records(path: str) -> list[dict]:
    """The per-run records saved in ``path``, the last one of each (env, algorithm, seed)."""
    latest: dict[tuple[str, str, int], dict] = {}
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if not record.get("summary"):
                latest[record["env"], record["algorithm"], record["seed"]] = record
    return list(latest.values())


def summary(env: str, algorithm: str, budget: int, records: list[dict]) -> dict:
    """Mean and 95% interval of the return at ``budget`` over seeds."""
    values = [r["returns"][str(budget)] for r in records if r["returns"].get(str(budget)) is not None]
    mean = statistics.fmean(values) if values else None
    half_width = None
    if len(values) > 1:
        half_width = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return {"summary": True, "env": env, "algorithm": algorithm, "budget_frames": budget, "seeds": len(values),
            "return_mean": mean, "ci95": None if half_width is None else [mean - half_width, mean + half_width],
            "train_fps_mean": statistics.fmean(r["train_fps"] for r in records),
            "zoo_ddpg_1M": ZOO_DDPG_1M.get(env)}


def summarize_file(path: str) -> None:
    """One summary line per (env, algorithm, budget) over the per-run records saved in ``path``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in latest_records(path):
        groups.setdefault((record["env"], record["algorithm"]), []).append(record)
    for (env, algorithm), records in groups.items():
        for budget in sorted({int(b) for r in records for b in r["returns"]}):
            print(json.dumps(summary(env, algorithm, budget, records)), flush=True)


def extend(path: str, budgets: list[int], eval_every: int, eval_episodes: int) -> None:
    """Resume every run recorded in ``path`` that stopped short of ``max(budgets)``; print the new records."""
    for record in latest_records(path):
        reached = max(int(b) for b in record["returns"])
        if reached >= max(budgets):
            continue
        all_budgets = sorted({*(int(b) for b in record["returns"]), *budgets})
        extended = run(record["env"], record["algorithm"], record["seed"], all_budgets, eval_every, eval_episodes,
                       record["overrides"], resume=record)
        print(json.dumps(extended), flush=True)


def main() -> None:
    """Run every (env, algorithm, seed) and print the records and summaries."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["half_cheetah", "ant"], help="config stems in conf/")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--eval_every", type=int, default=10_000, help="frames between evaluations; divides the budgets")
    # (a budget that is no multiple of frames_per_batch is read at the batch that crosses it)
    parser.add_argument("--eval_episodes", type=int, default=5)
    parser.add_argument("--summarize", metavar="FILE", help="print the summaries of the record lines in FILE and exit")
    parser.add_argument("--extend", metavar="FILE",
                        help="continue the runs recorded in FILE from their last checkpoints to the largest --budgets")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    if args.summarize:
        summarize_file(args.summarize)
        return
    if any(b % args.eval_every for b in args.budgets):
        parser.error("--eval_every must divide every budget, so that an evaluation falls on each")
    if args.extend:
        extend(args.extend, args.budgets, args.eval_every, args.eval_episodes)
        return
    for env in args.envs:
        for algorithm in args.algorithms:
            records = []
            for seed in args.seeds:
                records.append(run(env, algorithm, seed, args.budgets, args.eval_every, args.eval_episodes, args.overrides))
                print(json.dumps(records[-1]), flush=True)
            for budget in args.budgets:
                print(json.dumps(summary(env, algorithm, budget, records)), flush=True)


if __name__ == "__main__":
    main()
