"""Seed and config sweeps: configs x seeds (x overrides) as ``fit`` processes, finished runs skipped, one table at the end."""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from mbrl_lightning.compare import Group, markdown_table, write_figures
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import check_reachable, tracking_uri
from mbrl_lightning.tuning.config_check import resolved_config

USAGE = """Run configs x seeds (x overrides) as fit processes, at most --jobs at a time.

    python scripts/sweep.py --configs conf/cartpole_dqn.yaml tuned/cartpole_dqn/best.yaml --seeds 1 2 3 --jobs 2
    python scripts/sweep.py --configs conf/cartpole_dqn.yaml --vary model.lr=0.001,0.003 -- --model.total_frames 20000

A run already FINISHED in the store (same experiment and run name) is skipped, so the same
command resumes a sweep; it ends with the compare.py table of the sweep's runs. Under SLURM, one
array task runs one run: --index $SLURM_ARRAY_TASK_ID (--list numbers them).
"""
# ``fit`` in a fresh interpreter; the same as ``python scripts/fit.py`` without needing its path.
FIT = [sys.executable, "-c", "import sys; from mbrl_lightning.cli import main; sys.exit(main())"]


@dataclass(frozen=True)
class SweepRun:
    """One run of the sweep: a config, a seed and one value of each varied key."""

    config: Path
    seed: int
    varied: tuple[tuple[str, str], ...]
    experiment: str

    @property
    def group(self) -> str:
        """The row of the table: the config and the varied values, all seeds together."""
        return " ".join([self.config.stem, *(f"{key}={value}" for key, value in self.varied)])

    @property
    def run_name(self) -> str:
        """The MLflow run name that identifies this run in the store."""
        return f"{self.group.replace(' ', '_')}-s{self.seed}"

    def fit_args(self, extra: list[str]) -> list[str]:
        """Arguments of ``fit`` for this run."""
        overrides = [item for key, value in self.varied for item in (f"--{key}", value)]
        return ["--config", str(self.config), *extra, *overrides, "--seed_everything", str(self.seed),
                "--experiment_name", self.experiment, "--run_name", self.run_name, "--trainer.enable_progress_bar", "false"]


def parse_vary(items: list[str]) -> list[tuple[str, list[str]]]:
    """``KEY=V1,V2`` items as (key, values); a malformed one is a ConfigurationError."""
    varied = []
    for item in items:
        key, _, values = item.partition("=")
        if not key or not values:
            raise ConfigurationError(f"--vary {item!r}: expected KEY=VALUE[,VALUE...], e.g. model.lr=0.001,0.003")
        varied.append((key.removeprefix("--"), values.split(",")))
    return varied


def plan_runs(configs: list[Path], seeds: list[int], varied: list[tuple[str, list[str]]], experiment: str | None) -> list[SweepRun]:
    """Every run of the sweep, in a fixed order (what ``--index`` counts)."""
    runs = []
    for config in configs:
        if not config.is_file():
            raise ConfigurationError(f"--configs {config}: no such file.")
        name = experiment or (yaml.safe_load(config.read_text()) or {}).get("experiment_name") or "mbrl-lightning"
        for values in itertools.product(*(values for _, values in varied)):
            for seed in seeds:
                runs.append(SweepRun(config, seed, tuple(zip([key for key, _ in varied], values)), name))
    return runs


def finished(client: MlflowClient, run: SweepRun) -> list:
    """The store's FINISHED runs of ``run`` (same experiment and run name)."""
    experiment = client.get_experiment_by_name(run.experiment)
    if experiment is None:
        return []
    query = f"attributes.run_name = '{run.run_name}' and attributes.status = 'FINISHED'"
    return client.search_runs([experiment.experiment_id], filter_string=query, max_results=1)


def launch(runs: list[SweepRun], extra: list[str], jobs: int, logs: Path) -> dict[SweepRun, int]:
    """Run ``runs`` as ``fit`` processes, at most ``jobs`` at once; returns each run's exit code."""
    logs.mkdir(parents=True, exist_ok=True)
    waiting, running, codes = list(runs), {}, {}
    while waiting or running:
        while waiting and len(running) < jobs:
            run = waiting.pop(0)
            log = (logs / f"{run.run_name}.log").open("w")
            running[run] = (subprocess.Popen([*FIT, *run.fit_args(extra)], stdout=log, stderr=subprocess.STDOUT), log)
            print(f"started {run.run_name} (log: {logs / (run.run_name + '.log')})", flush=True)
        for run, (process, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                codes[run] = process.returncode
                del running[run]
                print(f"{'finished' if process.returncode == 0 else f'FAILED ({process.returncode})'} {run.run_name}", flush=True)
        time.sleep(0.5)
    return codes


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The command's options, and the ``fit`` overrides after ``--`` that every run shares."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", type=Path, required=True, help="experiment configs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of every config (default: 0 1 2)")
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2", help="a key to sweep; several multiply")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--experiment", help="MLflow experiment of every run (default: each config's experiment_name)")
    parser.add_argument("--metric", default="eval/return_mean", help="the metric tabulated")
    parser.add_argument("--threshold", type=float, help="also tabulate the frames to reach this value")
    parser.add_argument("--budget", type=int, metavar="FRAMES", help="compare at this many env frames")
    parser.add_argument("--out", type=Path, default=Path("sweep"), help="folder for logs/, table.md and the figures")
    parser.add_argument("--list", action="store_true", help="print the numbered runs and exit")
    parser.add_argument("--index", type=int, help="run only run number INDEX (one SLURM array task)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/sweep.py``; returns the exit code."""
    args, extra = parse_args(argv)
    try:
        runs = plan_runs(args.configs, args.seeds, parse_vary(args.vary), args.experiment)
        if args.index is not None and not 0 <= args.index < len(runs):
            raise ConfigurationError(f"--index {args.index}: the sweep has runs 0 to {len(runs) - 1}.")
        for run in {run.group: run for run in runs}.values():  # one check per config and values
            resolved_config(run.fit_args(extra))
        check_reachable()
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.list:
        for index, run in enumerate(runs):
            print(f"{index}\t{run.run_name}\t{run.experiment}")
        return 0
    client = MlflowClient(tracking_uri())
    chosen = runs if args.index is None else [runs[args.index]]
    todo = [run for run in chosen if not finished(client, run)]
    print(f"{len(chosen) - len(todo)} of {len(chosen)} runs already finished in {tracking_uri()}; {len(todo)} to run", flush=True)
    codes = launch(todo, extra, args.jobs, args.out / "logs")
    failed = [run.run_name for run, code in codes.items() if code != 0]
    if args.index is None:
        print_table(client, runs, args)
    if failed:
        print(f"error: {len(failed)} runs failed: {', '.join(failed)} (logs in {args.out / 'logs'}); "
              "run the same command again to retry them.", file=sys.stderr)
        return 1
    return 0


def print_table(client: MlflowClient, runs: list[SweepRun], args: argparse.Namespace) -> None:
    """The compare.py table and figures of the sweep: one row per config and values, over the seeds."""
    groups: dict[str, Group] = {}
    for run in runs:
        groups.setdefault(run.group, Group(run.group)).runs.extend(finished(client, run))
    present = [group for group in groups.values() if group.runs]
    if not present:
        return
    table = markdown_table(client, present, args.metric, args.threshold, args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    print(table)
    for path in write_figures(client, present, args.out, args.metric, args.budget):
        print(f"figure: {path}")
    print(f"table: {args.out / 'table.md'}")
