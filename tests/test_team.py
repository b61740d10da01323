"""Team mode against real servers: ``mlflow server`` on PostgreSQL with proxied artifacts, Optuna on the same PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from conftest import CONF_DIR, REPO_ROOT, fit_args, run_fit
from mlflow.tracking import MlflowClient
from servers import Outage, ServerUnavailable, shared_team_servers

from mbrl_lightning.tuning.command import main as tune_main

SMALL = ("--model.frames_per_batch", "64", "--model.updates_per_batch", "4", "--model.learning_starts", "128",
         "--model.eval_every_frames", "256", "--model.eval_episodes", "2", "--checkpoint.every_n_frames", "256")


@pytest.fixture(scope="session")
def team(tmp_path_factory: pytest.TempPathFactory):
    """The team's servers for the whole session (shared by the xdist workers of this session)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    manager = shared_team_servers(shared)
    try:
        servers = manager.__enter__()
    except ServerUnavailable as error:
        pytest.skip(f"team-mode servers cannot start here: {error}")
    yield servers
    manager.__exit__(None, None, None)


def _frames_in(path: Path) -> int:
    return torch.load(path, weights_only=True)["mbrl"]["frames"]


def test_a_run_logs_to_the_server_and_resumes_from_its_artifact_store(team, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.tracking_uri)
    first = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "512", "--experiment_name", "team"))
    run_id = first.trainer.logger.run_id
    client = MlflowClient(team.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert [m.step for m in client.get_metric_history(run_id, "eval/return_mean")] == [256, 512]
    stored = list(team.artifacts.rglob(f"{run_id}/artifacts/checkpoints/last.ckpt"))
    assert len(stored) == 1 and _frames_in(stored[0]) == 512  # uploaded through the server, not written beside

    for local in Path("checkpoints").rglob("*.ckpt"):
        local.unlink()
    resumed = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "768", "--experiment_name", "team",
                                "--ckpt_path", f"runs:/{run_id}"))
    assert "downloaded" in str(resumed.resume.path) and resumed.trainer.logger.run_id == run_id
    assert resumed.model.frames == 768
    steps = [m.step for m in client.get_metric_history(run_id, "eval/return_mean")]
    assert sorted(set(steps)) == [256, 512, 768] and client.get_run(run_id).info.status == "FINISHED"


def test_a_study_keeps_its_trials_in_postgresql_and_its_runs_on_the_server(team, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.tracking_uri)
    space = Path("space.yaml")
    space.write_text(yaml.safe_dump({
        "config": str(CONF_DIR / "cartpole_dqn.yaml"), "n_trials": 1,
        "fixed": {"model.total_frames": 256, "model.frames_per_batch": 64, "model.updates_per_batch": 2,
                  "model.learning_starts": 128, "model.eval_every_frames": 256, "model.eval_episodes": 2,
                  "checkpoint.every_n_frames": 0, "trainer.enable_progress_bar": False, "plots.enabled": False},
        "space": {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}))
    storage = team.database_url("optuna")
    assert tune_main(["--search", str(space), "--storage", storage, "--study-name", "team_lr"]) == 0
    (trial,) = optuna.load_study(study_name="team_lr", storage=storage).get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE
    client = MlflowClient(team.tracking_uri)
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["optuna.study"] == "team_lr" and parent.info.status == "FINISHED"
    assert run.info.status == "FINISHED" and run.data.tags["optuna.trial"] == "0"


def test_a_checkpoint_while_the_server_is_away_tries_it_once_per_call_and_is_kept(monkeypatch, tmp_path) -> None:
    # Where the run's artifacts are is asked of the server at each checkpoint: MLflow's own retries
    # (7, with back-off) would hold training for minutes there while the server is away.
    import urllib3.util.connection

    from mbrl_lightning.callbacks import FrameCheckpoint
    from mbrl_lightning.tracking.resilient import TrackingServerLogger

    # Without back-off, a retried request shows at once as more attempts than calls.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    attempts = []
    connect = urllib3.util.connection.create_connection
    monkeypatch.setattr(urllib3.util.connection, "create_connection", lambda *a, **k: attempts.append(a) or connect(*a, **k))
    logger = TrackingServerLogger(tracking_uri="http://127.0.0.1:9", run_id="away")  # the discard port: nothing listens
    logger._initialized = True  # a run that already started, before the server went away
    trainer = SimpleNamespace(save_checkpoint=lambda path, weights_only: Path(path).write_bytes(b"state"),
                              is_global_zero=True, logger=logger, lightning_module=None)
    path = FrameCheckpoint(dirpath=str(tmp_path)).save(trainer)
    assert len(attempts) == 2  # where the artifacts are, then the upload: one try each
    (kept,) = [json.loads(line) for line in (Path("mlruns/offline/away/operations.jsonl")).read_text().splitlines()]
    assert kept["op"] == "log_artifact" and kept["run_id"] == "away" and Path(kept["local_path"]).read_bytes() == b"state"
    assert path.read_bytes() == b"state"


def _wait_for(condition, seconds: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"training ended before {what}: {process.communicate()[1][-3000:]}"
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} within {seconds} s: {process.communicate()[1][-3000:]}")
        time.sleep(0.2)


def test_a_server_that_goes_away_mid_run_loses_no_metric_and_training_goes_on(team, subprocess_env) -> None:
    # The run talks to the team's server through a forwarder that is closed and reopened: an outage.
    outage = Outage(team.mlflow_port)
    uri = outage.uri
    command = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py"),
               *fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "1000000", "--experiment_name", "outage")]
    fit = subprocess.Popen(command, env={**subprocess_env, "MLFLOW_TRACKING_URI": uri},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: list(Path("checkpoints").rglob("last.ckpt")), 600, fit, "first checkpoint")
        outage.close()
        spooled = lambda: list(Path("mlruns/offline").rglob("operations.jsonl"))  # noqa: E731
        _wait_for(lambda: spooled() and "log_artifact" in spooled()[0].read_text(), 600, fit, "checkpoint while away")
        outage.reopen()
        _wait_for(lambda: not spooled(), 120, fit, "upload of the kept calls")
        fit.send_signal(signal.SIGTERM)
        _, stderr = fit.communicate(timeout=120)
    finally:
        if fit.poll() is None:
            fit.kill()
        outage.close()
    assert fit.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if "does not answer" in line]
    assert len(warnings) == 1 and "training goes on" in warnings[0], stderr[-3000:]
    (checkpoint,) = Path("checkpoints").rglob("last.ckpt")
    frames = _frames_in(checkpoint)

    client = MlflowClient(team.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "train/env_frames")})
    assert steps == list(range(64, frames + 1, 64))  # every batch's metrics, those of the outage included
    stored = list(team.artifacts.rglob(f"{run.info.run_id}/artifacts/checkpoints/last.ckpt"))
    assert len(stored) == 1 and _frames_in(stored[0]) == frames
