"""Return at fixed env-frame budgets of continuous-control learners on pybullet (and a peer), JSON lines.

    python benchmarks/continuous_control.py --envs half_cheetah ant --algorithms sac td3 --seeds 0 1 2 --budgets 100000 300000
    python benchmarks/continuous_control.py --envs half_cheetah --seeds 0 --budgets 20000 --eval_every 5000
    python benchmarks/continuous_control.py --envs half_cheetah --peer sb3_sac --seeds 0 --budgets 300000
    python benchmarks/continuous_control.py --summarize runs.jsonl --budgets 50000 100000  # summaries of runs printed earlier
    python benchmarks/continuous_control.py --extend runs.jsonl --budgets 300000 >> runs.jsonl  # train them longer

Algorithms: ``ddpg`` (``conf/<env>.yaml``), ``ddpg_imagination`` (``conf/<env>_imagination.yaml``)
and every other ``<algo>`` as ``conf/<env>_<algo>.yaml`` (``td3``, ``sac``, ``sac_imagination``,
``mbpo``). ``--peer sb3_sac`` trains Stable-Baselines3's SAC with rl-baselines3-zoo's pybullet
settings instead (``sb3_peer.py``; the optional ``bench`` extra), evaluated by the same protocol:
this project's deterministic evaluation on the same env, seeds, episode count and frame budgets.

Every evaluation prints a line (``"evaluation": true``: frames, return, training seconds, run id)
as it happens, flushed, so a run that is stopped keeps what it measured; a finished run then
prints its record line.

Seeds may run as separate processes (in parallel, or one at a time as a machine frees up); their
saved record lines are summarised together with ``--summarize``. Long budgets can be reached in
pieces: ``--extend`` resumes each run of the file (finished or stopped: its last line counts) from
its last checkpoint (in the same MLflow run, exactly as if it had never stopped; the SB3 peer from
the model and replay buffer saved at its last evaluation) up to the largest budget and prints its
new lines, whose record replaces the old one in ``--summarize``.

Each (env, algorithm, seed) is a ``fit`` of its config through the CLI with ``total_frames`` = the largest budget, logged to the MLflow experiment
``benchmark_<config>``. The return at a budget is the deterministic evaluation (``eval/return_mean``)
logged at that frame count (on the collected batch that crosses it). ``train_fps`` is real env frames per second of training (collection and
learning, evaluations excluded: frames / ``train/seconds``). One line per run, then one summary line
per (env, algorithm, budget) with the mean over seeds, a 95% Student-t interval (null for one seed)
and the interquartile mean, next to the rl-baselines3-zoo scores after 1M frames.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import TextIO

from json_lines import stdout_to_stderr
from lightning.pytorch import Callback, LightningModule, Trainer
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.stats import iqm
from mbrl_lightning.tracking import tracking_uri

# Config suffixes of the seed's DDPG configs; every other algorithm reads conf/<env>_<algorithm>.yaml.
SEED_SUFFIXES = {"ddpg": "", "ddpg_imagination": "_imagination"}
ALGORITHMS = ["ddpg", "ddpg_imagination", "td3", "sac", "sac_imagination", "mbpo"]
PEERS = ["sb3_sac"]
ENV_IDS = {"half_cheetah": "HalfCheetahBulletEnv-v0", "ant": "AntBulletEnv-v0"}
# rl-baselines3-zoo benchmark.md, return after 1M frames.
ZOO_1M = {"half_cheetah": {"tqc": 3675.0, "td3": 2822.0, "sac": 2792.0, "ddpg": 2078.0},
          "ant": {"tqc": 3457.0, "td3": 3300.0, "sac": 3073.0, "ddpg": 2399.0}}
# Two-sided 97.5% quantiles of Student's t by degrees of freedom (1.96 beyond the table).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def config_path(env: str, algorithm: str) -> str:
    """The config of ``algorithm`` on ``env``."""
    return f"conf/{env}{SEED_SUFFIXES.get(algorithm, '_' + algorithm)}.yaml"


class EvaluationLines(Callback):
    """Print a JSON line after every batch that evaluated, so a stopped run keeps its measurements.

    ``recorded_frames`` are evaluations already printed: a run resumed from a checkpoint older than
    its last evaluation evaluates those frames again, and their lines are not printed twice.
    """

    def __init__(self, about: dict, stream: TextIO, recorded_frames: frozenset[int] = frozenset()) -> None:
        self.about = about
        self.stream = stream
        self.recorded_frames = recorded_frames
        self.evaluations = 0

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        """Start from the count a resumed run restored."""
        self.evaluations = module.evaluations

    def on_train_batch_end(self, trainer: Trainer, module: LightningModule, *args: object) -> None:
        """A line for the evaluation this batch ran, if it ran one."""
        if module.evaluations == self.evaluations:
            return
        self.evaluations = module.evaluations
        if module.frames in self.recorded_frames:
            return
        line = {"evaluation": True, **self.about, "frames": module.frames,
                "return_mean": module.progress.get("eval"), "train_seconds": round(module.train_seconds, 1),
                "train_fps": round(module.frames / max(module.train_seconds, 1e-9), 1),
                "run_id": trainer.logger.run_id}
        print(json.dumps(line), file=self.stream, flush=True)


def run(env: str, algorithm: str, seed: int, budgets: list[int], eval_every: int, eval_episodes: int,
        overrides: list[str], resume: dict | None = None) -> dict:
    """Fit one seed up to the largest budget (continuing the run of record ``resume``); return its record."""
    # The real standard output, kept open while file descriptor 1 goes to stderr during training.
    with open(os.dup(1), "w") as stdout, stdout_to_stderr():
        if algorithm in PEERS:
            from sb3_peer import run_peer

            return run_peer(env, ENV_IDS[env], seed, budgets, eval_every, eval_episodes, stdout, resume)
        return fit_config(env, algorithm, seed, budgets, eval_every, eval_episodes, overrides, stdout, resume)


def fit_config(env: str, algorithm: str, seed: int, budgets: list[int], eval_every: int, eval_episodes: int,
               overrides: list[str], stdout: TextIO, resume: dict | None = None) -> dict:
    """Fit ``conf/<env>_<algorithm>.yaml`` through the CLI, an evaluation line at a time; return the run record."""
    config = config_path(env, algorithm)
    started = time.time()
    args = ["--config", config, "--seed_everything", str(seed), "--experiment_name", f"benchmark_{Path(config).stem}",
            "--trainer.enable_progress_bar", "false", "--model.total_frames", str(max(budgets)),
            "--model.eval_every_frames", str(eval_every), "--model.eval_episodes", str(eval_episodes), *overrides]
    if resume is not None:
        args += ["--ckpt_path", f"runs:/{resume['run_id']}"]
    about = {"env": env, "algorithm": algorithm, "config": config, "overrides": overrides, "seed": seed}
    cli = MBRLCLI(args)
    cli.trainer.callbacks.append(EvaluationLines(about, stdout, frozenset((resume or {}).get("evaluated_frames", ()))))
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


def latest_lines(path: str, records_only: bool = True) -> list[dict]:
    """The last line of each (env, algorithm, overrides, seed) in ``path``: run records, or any line (evaluations too)."""
    latest: dict[tuple[str, str, tuple[str, ...], int], dict] = {}
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("summary") or (records_only and record.get("evaluation")):
                continue
            latest[record["env"], record["algorithm"], tuple(record.get("overrides", ())), record["seed"]] = record
    return list(latest.values())


def evaluation_lines(path: str) -> dict[tuple[str, str, int, str], list[dict]]:
    """The evaluation lines of ``path`` by run: (env, algorithm, seed, run id)."""
    runs: dict[tuple[str, str, int, str], list[dict]] = {}
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("evaluation"):
                runs.setdefault((record["env"], record["algorithm"], record["seed"], record.get("run_id")), []).append(record)
    return runs


def summary(env: str, algorithm: str, budget: int, records: list[dict]) -> dict:
    """Mean, 95% interval and interquartile mean of the return at ``budget`` over seeds."""
    values = [r["returns"][str(budget)] for r in records if r["returns"].get(str(budget)) is not None]
    mean = statistics.fmean(values) if values else None
    half_width = None
    if len(values) > 1:
        half_width = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return {"summary": True, "env": env, "algorithm": algorithm, "budget_frames": budget, "seeds": len(values),
            "return_mean": mean, "ci95": None if half_width is None else [mean - half_width, mean + half_width],
            "return_iqm": float(iqm(values)) if values else None,
            "train_fps_mean": statistics.fmean(r["train_fps"] for r in records),
            "zoo_1M": ZOO_1M.get(env)}


def returns_at(curve: list[tuple[int, float]], budgets: list[int]) -> dict[str, float]:
    """The return at each budget the ``(frames, return)`` curve reached: its first evaluation at or past it."""
    points = sorted(curve)
    # As in fit_config: an evaluation runs on the batch that crosses a multiple of eval_every.
    return {str(b): next(value for frames, value in points if frames >= b) for b in budgets if points and points[-1][0] >= b}


def record_from_evaluations(evaluations: list[dict]) -> dict:
    """The record of a run that was stopped before printing one, from its evaluation lines."""
    last = evaluations[-1]
    return {key: last.get(key) for key in ("env", "algorithm", "overrides", "seed", "train_fps")} | {
        "eval_curve": [(line["frames"], line["return_mean"]) for line in evaluations]}


def summarize_file(path: str, budgets: list[int]) -> None:
    """One summary line per (env, algorithm, overrides, budget) over the runs saved in ``path``.

    Each run counts by its evaluation curve, at each of ``budgets`` it reached: a finished run's
    record holds it, a run stopped before its record (its last line an evaluation) by its evaluation lines.
    """
    evaluations = evaluation_lines(path)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for record in latest_lines(path, records_only=False):
        if record.get("evaluation"):
            record = record_from_evaluations(evaluations[record["env"], record["algorithm"], record["seed"], record.get("run_id")])
        record = {**record, "returns": returns_at([tuple(point) for point in record["eval_curve"]], budgets)}
        groups.setdefault((record["env"], record["algorithm"], " ".join(record.get("overrides", []))), []).append(record)
    for (env, algorithm, overrides), records in groups.items():
        for budget in sorted({int(b) for r in records for b in r["returns"]}):
            line = summary(env, algorithm, budget, records)
            print(json.dumps({**line, "overrides": overrides.split(), "seed_list": sorted(
                r["seed"] for r in records if r["returns"].get(str(budget)) is not None)}), flush=True)


def evaluated_frames(path: str) -> dict[tuple[str, str, int, str], set[int]]:
    """The frames of every evaluation line in ``path``, by (env, algorithm, seed, run id)."""
    return {run: {line["frames"] for line in lines} for run, lines in evaluation_lines(path).items()}


def extend(path: str, budgets: list[int], eval_every: int, eval_episodes: int) -> None:
    """Resume every run of ``path`` (finished or stopped) short of ``max(budgets)``; print its new lines."""
    printed = evaluated_frames(path)
    for record in latest_lines(path, records_only=False):
        recorded = [int(b) for b in record.get("returns", {})]
        reached = record["frames"] if record.get("evaluation") else max(recorded)
        if reached >= max(budgets):
            continue
        all_budgets = sorted({*recorded, *budgets})
        key = (record["env"], record["algorithm"], record["seed"], record.get("run_id"))
        resume = {**record, "evaluated_frames": sorted(printed.get(key, ()))}
        extended = run(record["env"], record["algorithm"], record["seed"], all_budgets, eval_every, eval_episodes,
                       record["overrides"], resume=resume)
        print(json.dumps(extended), flush=True)


def main() -> None:
    """Run every (env, algorithm, seed) and print the records and summaries."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["half_cheetah", "ant"], help="config stems in conf/")
    parser.add_argument("--algorithms", nargs="+", default=["ddpg", "ddpg_imagination"], choices=ALGORITHMS,
                        help="algorithms, each read from conf/<env>_<algorithm>.yaml (ddpg: conf/<env>.yaml)")
    parser.add_argument("--peer", choices=PEERS, help="run this peer (SB3's SAC, zoo settings) instead of --algorithms")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--eval_every", type=int, default=10_000, help="frames between evaluations; divides the budgets")
    # (a budget that is no multiple of frames_per_batch is read at the batch that crosses it)
    parser.add_argument("--eval_episodes", type=int, default=5)
    parser.add_argument("--summarize", metavar="FILE",
                        help="print the summaries of the runs in FILE at --budgets (stopped runs by their evaluations) and exit")
    parser.add_argument("--extend", metavar="FILE",
                        help="continue the runs recorded in FILE from their last checkpoints to the largest --budgets")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    if args.summarize:
        summarize_file(args.summarize, args.budgets)
        return
    if any(b % args.eval_every for b in args.budgets):
        parser.error("--eval_every must divide every budget, so that an evaluation falls on each")
    if args.extend:
        extend(args.extend, args.budgets, args.eval_every, args.eval_episodes)
        return
    algorithms = [args.peer] if args.peer else args.algorithms
    missing = [config_path(env, a) for env in args.envs for a in algorithms if a not in PEERS
               and not Path(config_path(env, a)).exists()]
    if missing:
        parser.error(f"--algorithms: no config {', '.join(missing)}; those of conf/ are {', '.join(ALGORITHMS)}")
    if args.peer and any(env not in ENV_IDS for env in args.envs):
        parser.error(f"--envs: the peer runs on {', '.join(ENV_IDS)}")
    for env in args.envs:
        for algorithm in algorithms:
            records = []
            for seed in args.seeds:
                records.append(run(env, algorithm, seed, args.budgets, args.eval_every, args.eval_episodes, args.overrides))
                print(json.dumps(records[-1]), flush=True)
            for budget in args.budgets:
                print(json.dumps(summary(env, algorithm, budget, records)), flush=True)


if __name__ == "__main__":
    main()
