"""The ``tune`` command line: run a study, then report its trials and write the best config."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import check_reachable, tracking_uri, ui_command
from mbrl_lightning.tuning.report import trial_records, trial_table, write_curves
from mbrl_lightning.tuning.search_space import load_search_space
from mbrl_lightning.tuning.study import (
    StudyPlan,
    check_plan,
    create_study,
    default_storage,
    parent_run,
    run_workers,
    shown_url,
    trials_left,
    write_best_config,
)

USAGE = """Tune any config's keys with Optuna; every trial is an MLflow run nested under the study's run.

    python scripts/tune.py --config conf/cartpole_dqn.yaml                 # space: conf/search/cartpole_dqn.yaml
    python scripts/tune.py --search conf/search/cartpole_dqn.yaml --workers 2 -- --model.total_frames 20000

Running the same command again resumes the study; machines sharing --storage (PostgreSQL) and
MLFLOW_TRACKING_URI work on one study together. The best trial is written as a config that
scripts/fit.py runs as is.
"""


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The command's options, and the ``fit`` overrides after ``--``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="the experiment (default: the search space's 'config', or conf/<name>.yaml)")
    parser.add_argument("--search", type=Path, help="the search space (default: conf/search/<config name>.yaml)")
    parser.add_argument("--study-name", help="Optuna study name (default: the search space's file name)")
    parser.add_argument("--storage", help=f"Optuna storage URL (default: {default_storage()}, beside the MLflow store)")
    parser.add_argument("--experiment", help="MLflow experiment of the study's runs (default: the study name)")
    parser.add_argument("--n-trials", type=int, help="trials the study should have complete or pruned (default: the space's n_trials)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine running trials in parallel")
    parser.add_argument("--out", type=Path, help="folder for best.yaml, trials.jsonl and trials.png (default: tuned/<study>)")
    args = parser.parse_args(argv)
    if args.config is None and args.search is None:
        parser.error("give --config or --search")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: must be at least 1")
    if args.n_trials is not None and args.n_trials < 1:
        parser.error(f"--n-trials {args.n_trials}: must be at least 1")
    return args, extra


def _plan(args: argparse.Namespace, extra: list[str]) -> StudyPlan:
    search = args.search or args.config.parent / "search" / args.config.name
    space = load_search_space(search, args.config)
    study_name = args.study_name or search.stem
    return StudyPlan(space, args.storage or default_storage(), study_name, args.experiment or study_name,
                     args.n_trials or space.n_trials, extra)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/tune.py``; returns the exit code."""
    args, extra = parse_args(argv)
    try:
        plan = _plan(args, extra)
        check_plan(plan)
        check_reachable()
        study = create_study(plan)
        client = MlflowClient(tracking_uri())
        plan.parent_run_id = parent_run(client, study, plan)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Study {plan.study_name} in {shown_url(plan.storage_url)}: {plan.n_trials} trials, {args.workers} worker(s) | "
          f"MLflow run {plan.parent_run_id} (experiment {plan.experiment_name!r}) | view: {ui_command()}", flush=True)
    codes = run_workers(plan, args.workers)
    return report(plan, client, args.out or Path("tuned") / plan.study_name, codes)


def report(plan: StudyPlan, client: MlflowClient, out: Path, codes: list[int]) -> int:
    """Print the trials, write their records, curves and the best config, and log them to the study's run."""
    study = plan.load()
    records = trial_records(study)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    table = trial_table(records, plan.space.metric)
    (out / "trials.md").write_text(table)
    print(table)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    best_number = study.best_trial.number if complete else None
    curves = write_curves(records, plan.space.metric, out / "trials.png", best_number)
    files = [out / "trials.jsonl", out / "trials.md", curves]
    status = 0
    try:
        best = write_best_config(plan, study, out / "best.yaml")
        files.append(out / "best.yaml")
        client.log_metric(plan.parent_run_id, f"best/{plan.space.metric}", best.value, step=best.number)
        client.set_tag(plan.parent_run_id, "optuna.best_trial", str(best.number))
        print(f"Best trial {best.number}: {plan.space.metric} = {best.value:.4g} with {best.user_attrs['overrides']}")
        print(f"Best config: {out / 'best.yaml'}  (run it: python scripts/fit.py --config {out / 'best.yaml'})")
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    for path in files:
        client.log_artifact(plan.parent_run_id, str(path), "study")
    if any(codes):
        print(f"error: worker exit codes {codes}; run the same command again to resume the study.", file=sys.stderr)
        status = 1
    running = any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))
    if trials_left(study, plan.n_trials) == 0 and not running:
        client.set_terminated(plan.parent_run_id, "FINISHED" if status == 0 else "FAILED")
    return status
