"""A study: its storage, its MLflow parent run, the workers that run its trials, and its best config."""

from __future__ import annotations

import multiprocessing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from mbrl_lightning.errors import ConfigurationError, DivergenceError
from mbrl_lightning.tracking import DEFAULT_TRACKING_URI, artifact_location
from mbrl_lightning.tuning.config_check import resolved_config
from mbrl_lightning.tuning.search_space import SearchSpace, as_overrides
from mbrl_lightning.tuning.trial import STUDY_TAG, TrialRunner

PARENT_RUN_ATTR = "mlflow_parent_run_id"
# A worker that dies mid-trial stops its heartbeat; after the grace period another worker marks
# the trial failed and queues it again (Optuna's RetryHeartbeatStaleTrialCallback).
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 60


def default_storage() -> str:
    """A SQLite file beside the embedded MLflow store (``mlruns/optuna.db``)."""
    folder = Path(DEFAULT_TRACKING_URI.removeprefix("sqlite:///")).resolve().parent
    return f"sqlite:///{folder / 'optuna.db'}"


def shown_url(url: str) -> str:
    """``url`` without its password, for messages and tags."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: shown as given
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study storage at ``url`` (SQLite or PostgreSQL); a storage that cannot be opened is a ConfigurationError."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Workers write at once; SQLite makes a writer wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            # Heartbeats are marked experimental since Optuna 2.8; they are how stale trials are found.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except Exception as error:  # SQLAlchemy and the drivers raise many types for a storage that is not there
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigurationError(f"--storage {shown_url(url)}: cannot open the study storage ({reason}).") from None


def trials_left(study: optuna.Study, n_trials: int) -> int:
    """Trials still to start: ``n_trials`` minus those complete, pruned or running.

    Failed trials (diverged, or a sampled value the config refuses) are replaced, up to twice
    ``n_trials`` of them: a space whose every trial fails would otherwise never end.
    """
    trials = study.get_trials(deepcopy=False)
    counted = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) for t in trials)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    return 0 if failed >= 2 * n_trials else max(n_trials - counted, 0)


@dataclass
class StudyPlan:
    """Everything a worker needs to join a study (picklable, so workers can be other processes)."""

    space: SearchSpace
    storage_url: str
    study_name: str
    experiment_name: str
    n_trials: int
    extra_args: list[str]
    parent_run_id: str = ""

    def runner(self) -> TrialRunner:
        """The study's objective."""
        return TrialRunner(self.space, self.study_name, self.experiment_name, self.parent_run_id, self.extra_args)

    def load(self, worker_index: int = 0) -> optuna.Study:
        """The study, with this worker's sampler and the space's pruner."""
        return optuna.load_study(
            study_name=self.study_name, storage=open_storage(self.storage_url),
            sampler=self.space.make_sampler(worker_index), pruner=self.space.make_pruner(),
        )


def check_plan(plan: StudyPlan) -> None:
    """Refuse, before any trial, a search key ``fit`` does not know or a config that never evaluates."""
    probe = {parameter.key: parameter.choices[0] if parameter.type == "categorical" else parameter.low
             for parameter in plan.space.parameters}
    probe = {key: int(value) if plan.space.parameters[i].type == "int" else value for i, (key, value) in enumerate(probe.items())}
    try:
        config = resolved_config([*plan.runner().base_args(), *as_overrides(probe)])
    except ConfigurationError as error:
        raise ConfigurationError(f"{plan.space.path}: {error}") from None
    model = config.get("model", {}).get("init_args", {})
    if model.get("eval_every_frames", 1) <= 0:
        raise ConfigurationError(f"{plan.space.path}: model.eval_every_frames={model['eval_every_frames']}: "
                                 f"trials report {plan.space.metric}, so it must be positive.")


def create_study(plan: StudyPlan) -> optuna.Study:
    """Create the study, or load it to resume (same name and storage); its direction must match the space's."""
    study = optuna.create_study(
        study_name=plan.study_name, storage=open_storage(plan.storage_url), direction=plan.space.direction,
        load_if_exists=True, sampler=plan.space.make_sampler(), pruner=plan.space.make_pruner(),
    )
    if study.direction.name.lower() != plan.space.direction:
        raise ConfigurationError(f"--study-name {plan.study_name}: the stored study is to "
                                 f"{study.direction.name.lower()}, the search space says {plan.space.direction}.")
    return study


def parent_run(client: MlflowClient, study: optuna.Study, plan: StudyPlan) -> str:
    """The study's MLflow run (created once, found again through the study on resume and on other machines)."""
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    experiment = client.get_experiment_by_name(plan.experiment_name)
    experiment_id = (experiment.experiment_id if experiment is not None else
                     client.create_experiment(plan.experiment_name, artifact_location=artifact_location(plan.experiment_name)))
    run = client.create_run(experiment_id, run_name=plan.study_name, tags={
        STUDY_TAG: plan.study_name, "optuna.role": "study", "optuna.storage": shown_url(plan.storage_url),
        "config": str(plan.space.config),
    })
    run_id = run.info.run_id
    client.log_artifact(run_id, str(plan.space.path))
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


class _StartGate:
    """The objective, which first releases the workers' start lock: a trial counts as running once it holds it.

    Without the lock two workers could both see one trial left and both start one (more trials
    than ``n_trials``); Optuna's ``MaxTrialsCallback`` has the same race, so the check and the
    start are made one step here.
    """

    def __init__(self, runner: TrialRunner, lock: Any) -> None:
        self.runner = runner
        self.lock = lock
        self.held = False

    def __call__(self, trial: optuna.Trial) -> float:
        self.release()
        return self.runner(trial)

    def release(self) -> None:
        """Let the next worker check the count (once per trial)."""
        if self.held:
            self.held = False
            self.lock.release()


def run_worker(plan: StudyPlan, worker_index: int = 0, start_lock: Any = None) -> None:
    """Run trials until the study has ``n_trials`` complete, pruned or running; a failed trial does not stop it."""
    study = plan.load(worker_index)
    gate = _StartGate(plan.runner(), start_lock or multiprocessing.get_context("spawn").Lock())
    while True:
        gate.lock.acquire()
        gate.held = True
        try:
            if trials_left(study, plan.n_trials) <= 0:
                return
            study.optimize(gate, n_trials=1, catch=(DivergenceError, ConfigurationError))
        finally:
            gate.release()


def run_workers(plan: StudyPlan, workers: int) -> list[int]:
    """Run ``workers`` worker processes (or this process alone for one); returns their exit codes."""
    if workers == 1:
        run_worker(plan)
        return [0]
    # Spawned, not forked: each worker starts clean of this process's threads and open stores.
    context = multiprocessing.get_context("spawn")
    start_lock = context.Lock()
    processes = [context.Process(target=run_worker, args=(plan, index, start_lock), name=f"tune-worker-{index}")
                 for index in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return [process.exitcode for process in processes]


def write_best_config(plan: StudyPlan, study: optuna.Study, path: Path) -> optuna.trial.FrozenTrial:
    """Write the best trial's whole config as a YAML that ``scripts/fit.py --config`` runs as is."""
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigurationError(f"study {plan.study_name}: no trial has completed, so there is no best config.") from None
    config = resolved_config([*plan.runner().base_args(), *as_overrides(best.user_attrs["overrides"]),
                              "--experiment_name", f"{plan.study_name}_best"])
    header = (f"# Best trial {best.number} of study {plan.study_name}: {plan.space.metric} = {best.value:.4g}\n"
              f"# with {', '.join(f'{k}={v}' for k, v in best.user_attrs['overrides'].items())}.\n"
              f"# python scripts/fit.py --config {path}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return best

