"""Optuna studies: trials are nested MLflow runs, pruning stops trials early, divergence fails one trial only."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import CONF_DIR
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import main as fit_main
from mbrl_lightning.tracking import tracking_uri
from mbrl_lightning.tuning.command import main as tune_main
from mbrl_lightning.tuning.search_space import load_search_space
from mbrl_lightning.tuning.study import StudyPlan, create_study, parent_run, run_worker
from mbrl_lightning.tuning.trial import PARENT_TAG, STATE_TAG, STUDY_TAG, TRIAL_TAG

# Trials of a few seconds: 768 frames, an evaluation every 256.
TINY = {"model.total_frames": 768, "model.frames_per_batch": 64, "model.updates_per_batch": 4,
        "model.learning_starts": 128, "model.eval_every_frames": 256, "model.eval_episodes": 2,
        "checkpoint.every_n_frames": 0, "trainer.enable_progress_bar": False, "plots.enabled": False}


def write_space(path: Path, space: dict, **top) -> Path:
    """A search space over conf/cartpole_dqn.yaml with the tiny fixed budget."""
    document = {"config": str(CONF_DIR / "cartpole_dqn.yaml"), "fixed": TINY, "space": space, **top}
    path.write_text(yaml.safe_dump(document))
    return path


def _runs(client: MlflowClient, experiment: str):
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_three_trials_on_two_workers_are_nested_runs_and_the_best_config_runs(capsys) -> None:
    space = write_space(Path("lr.yaml"), {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
                        n_trials=3, sampler={"class_path": "optuna.samplers.RandomSampler", "init_args": {"seed": 0}},
                        pruner={"class_path": "optuna.pruners.MedianPruner", "init_args": {"n_startup_trials": 1}})
    assert tune_main(["--search", str(space), "--workers", "2"]) == 0

    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{Path('mlruns/optuna.db').resolve()}")
    trials = study.get_trials()
    assert len(trials) == 3
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    # Two workers shared the storage: some two trials ran at the same time.
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))

    client = MlflowClient(tracking_uri())
    runs = _runs(client, "lr")
    (parent,) = [run for run in runs if run.data.tags.get("optuna.role") == "study"]
    children = [run for run in runs if run is not parent]
    assert sorted(int(run.data.tags[TRIAL_TAG]) for run in children) == [0, 1, 2]
    for run in children:
        assert run.data.tags[PARENT_TAG] == parent.info.run_id and run.data.tags[STUDY_TAG] == "lr"
        trial = trials[int(run.data.tags[TRIAL_TAG])]
        assert run.data.tags[STATE_TAG] == trial.state.name
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"

    best = Path("tuned/lr/best.yaml")
    assert yaml.safe_load(best.read_text())["model"]["init_args"]["lr"] == pytest.approx(study.best_params["model.lr"])
    capsys.readouterr()
    assert fit_main(["--config", str(best)]) == 0
    (tuned,) = _runs(client, "lr_best")
    assert float(tuned.data.params["model.lr"]) == pytest.approx(study.best_params["model.lr"])


def _plan(space_path: Path, n_trials: int) -> tuple[StudyPlan, optuna.Study]:
    plan = StudyPlan(load_search_space(space_path), f"sqlite:///{Path('optuna.db').resolve()}", "s", "s", n_trials, [])
    study = create_study(plan)
    plan.parent_run_id = parent_run(MlflowClient(tracking_uri()), study, plan)
    return plan, study


def test_a_trial_below_the_median_is_pruned_at_its_first_evaluation() -> None:
    space = write_space(Path("s.yaml"), {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-3}},
                        pruner={"class_path": "optuna.pruners.MedianPruner", "init_args": {"n_startup_trials": 1}})
    plan, study = _plan(space, n_trials=2)
    # An earlier trial that scored the maximum at every evaluation: any real run is below its median.
    study.add_trial(optuna.trial.create_trial(
        params={"model.lr": 1e-3}, distributions={"model.lr": optuna.distributions.FloatDistribution(1e-3, 1e-3)},
        value=500.0, intermediate_values={256: 500.0, 512: 500.0, 768: 500.0}))
    run_worker(plan)

    trial = study.get_trials()[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [256]
    client = MlflowClient(tracking_uri())
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags[STATE_TAG] == "PRUNED"
    frames = [m.step for m in client.get_metric_history(run.info.run_id, "train/env_frames")]
    assert max(frames) == 256 < TINY["model.total_frames"]


def test_a_diverging_trial_fails_in_optuna_and_mlflow_and_the_study_goes_on() -> None:
    space = write_space(Path("s.yaml"), {"model.lr": {"type": "categorical", "choices": [1.0e30, 1.0e-3]}})
    plan, study = _plan(space, n_trials=1)
    study.enqueue_trial({"model.lr": 1.0e30})  # one Adam step of 1e30 overflows the Q-values
    study.enqueue_trial({"model.lr": 1.0e-3})
    run_worker(plan)

    diverged, finished = study.get_trials()
    assert diverged.state == optuna.trial.TrialState.FAIL and "training diverged" in diverged.user_attrs["failure"]
    assert finished.state == optuna.trial.TrialState.COMPLETE
    client = MlflowClient(tracking_uri())
    assert client.get_run(diverged.user_attrs["mlflow_run_id"]).info.status == "FAILED"
    assert client.get_run(diverged.user_attrs["mlflow_run_id"]).data.tags[STATE_TAG] == "FAIL"
    assert client.get_run(finished.user_attrs["mlflow_run_id"]).info.status == "FINISHED"


@pytest.mark.parametrize(("space", "top", "expected"), [
    ({"model.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}}, {}, "model.lrr: unknown option of mbrl_lightning.algorithms.DQN (did you mean: lr?)"),
    ({"model.lr": {"type": "float", "low": 1e-2, "high": 1e-4}}, {}, "space.model.lr: low=0.01 > high=0.0001"),
    ({"model.lr": {"type": "normal", "low": 1e-4, "high": 1e-2}}, {}, "space.model.lr.type='normal': allowed values: float, int, categorical"),
    ({"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, {"direction": "up"}, "direction='up': allowed values: maximize, minimize"),
])
def test_a_bad_search_space_is_refused_with_one_line(space: dict, top: dict, expected: str, capsys) -> None:
    path = write_space(Path("bad.yaml"), space, **top)
    assert tune_main(["--search", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


@pytest.mark.parametrize(("option", "expected"), [
    (("--storage", "postgresql://tuner@127.0.0.1:9/studies"), "--storage postgresql://tuner@127.0.0.1:9/studies: cannot open the study storage"),
    (("--tracking", "http://127.0.0.1:9"), "MLFLOW_TRACKING_URI=http://127.0.0.1:9: the tracking server does not answer"),
])
def test_an_unreachable_storage_or_tracking_server_is_refused_with_one_line(option, expected, capsys, monkeypatch) -> None:
    path = write_space(Path("ok.yaml"), {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2}})
    args = ["--search", str(path)]
    if option[0] == "--tracking":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", option[1])  # port 9 is the discard port: nothing listens
    else:
        args += list(option)
    assert tune_main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not Path("mlruns/optuna.db").exists()


def test_workers_never_start_more_trials_than_asked_even_when_their_counts_overlap(monkeypatch) -> None:
    """Two workers that both count the trials left before either starts one still run ``n_trials`` in all."""
    import threading
    import time as clock

    from mbrl_lightning.tuning import study as study_module

    study = optuna.create_study()
    counted = study_module.trials_left

    def slow_count(*args: object) -> int:
        left = counted(*args)
        clock.sleep(0.3)  # widen the window between counting and starting a trial
        return left

    monkeypatch.setattr(study_module, "trials_left", slow_count)

    class Plan:
        n_trials = 1

        def load(self, worker_index: int = 0) -> optuna.Study:
            return study

        def runner(self):
            return lambda trial: trial.suggest_float("x", 0.0, 1.0)

    lock = threading.Lock()
    workers = [threading.Thread(target=study_module.run_worker, args=(Plan(), index, lock)) for index in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(study.trials) == 1
