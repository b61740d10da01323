"""Checkpoints restore everything, resume continues the same MLflow run, and a missing one fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import Callback
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import tracking_uri
from mbrl_lightning.tracking.history import metric_history

SMALL = ("--model.frames_per_batch", "64", "--model.updates_per_batch", "4", "--model.learning_starts", "128",
         "--model.eval_every_frames", "512", "--model.eval_episodes", "2", "--checkpoint.every_n_frames", "256")
TOTAL = 1024


class StateAtTrainStart(Callback):
    """Snapshot what a resume must restore, taken after the checkpoint is loaded and before training."""

    def on_train_start(self, trainer, module) -> None:
        self.state = _module_state(module)


class RunStatusAtTrainStart(Callback):
    """The MLflow status of the run when training starts."""

    def on_train_start(self, trainer, module) -> None:
        self.status = trainer.logger.experiment.get_run(trainer.logger.run_id).info.status


def _module_state(module) -> dict:
    return {
        "frames": module.frames,
        "episodes": module.episodes,
        "epsilon": module.epsilon,
        "buffer": module.replay_buffer[:].clone(),
        "weights": {k: v.clone() for k, v in module.state_dict().items()},
        "target_counter": module.target_updater.counter,
    }


def _state_in_checkpoint(path: Path, template) -> dict:
    """The module state stored in a checkpoint, loaded into a fresh module of the same config."""
    checkpoint = torch.load(path, weights_only=True)
    template.load_state_dict(checkpoint["state_dict"])
    template.on_load_checkpoint(checkpoint)
    return _module_state(template)


def _assert_same_state(restored: dict, saved: dict) -> None:
    for key in ("frames", "episodes", "target_counter"):
        assert restored[key] == saved[key], key
    assert restored["epsilon"] == pytest.approx(saved["epsilon"])
    assert (restored["buffer"] == saved["buffer"]).all()
    assert restored["weights"].keys() == saved["weights"].keys()
    for name, value in saved["weights"].items():
        torch.testing.assert_close(restored["weights"][name], value, msg=name)


def _frame_steps(run_id: str, metric: str = "train/env_frames") -> list[int]:
    history = MlflowClient(tracking_uri()).get_metric_history(run_id, metric)
    return [m.step for m in sorted(history, key=lambda m: m.timestamp)]


def test_resume_restores_state_and_continues_the_mlflow_run() -> None:
    full = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", str(TOTAL)))

    first_half = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", str(TOTAL // 2)))
    run_id = first_half.trainer.logger.run_id
    saved_path = first_half.frame_checkpoint.last_path
    assert saved_path.is_file()
    saved = _state_in_checkpoint(saved_path, MBRLCLI(fit_args("cartpole_dqn.yaml", *SMALL)).model)
    assert saved["frames"] == TOTAL // 2 and saved["epsilon"] < 1.0 and len(saved["buffer"]) == TOTAL // 2

    probe = StateAtTrainStart()
    resumed = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", str(TOTAL),
                                "--ckpt_path", str(saved_path)), callbacks=(probe,))
    _assert_same_state(probe.state, saved)

    assert resumed.trainer.logger.run_id == run_id
    steps = _frame_steps(run_id)
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert steps[-1] == full.model.frames == resumed.model.frames == TOTAL
    assert _frame_steps(run_id, "eval/return_mean") == _frame_steps(full.trainer.logger.run_id, "eval/return_mean")
    # Exact: the metrics logged after the checkpoint are those of the uninterrupted run.
    client = MlflowClient(tracking_uri())
    for key in ("loss/q", "train/episode_return", "eval/return_mean"):
        assert metric_history(client, run_id, key).tolist() == metric_history(client, full.trainer.logger.run_id, key).tolist(), key


def test_resume_by_last_and_by_run_id_from_the_artifact_store(tmp_path: Path) -> None:
    first = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "256"))
    run_id = first.trainer.logger.run_id
    status = RunStatusAtTrainStart()
    by_last = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "512", "--ckpt_path", "last"),
                      callbacks=(status,))
    assert by_last.trainer.logger.run_id == run_id and by_last.model.frames == 512
    # The finished run shows as training again while it resumes, and as finished after.
    assert status.status == "RUNNING"
    assert MlflowClient(tracking_uri()).get_run(run_id).info.status == "FINISHED"

    # Only MLflow keeps the checkpoint now: it must be downloaded from the run's artifacts.
    for local in Path("checkpoints").rglob("*.ckpt"):
        local.unlink()
    by_run = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "768",
                               "--ckpt_path", f"runs:/{run_id}"))
    assert by_run.trainer.logger.run_id == run_id and by_run.model.frames == 768
    assert _frame_steps(run_id)[-1] == 768


@pytest.mark.parametrize("ckpt_path", ["missing.ckpt", "last", "runs:/0123456789abcdef"])
def test_a_missing_checkpoint_is_an_error_not_a_fresh_start(ckpt_path: str) -> None:
    with pytest.raises(ConfigurationError, match="--ckpt_path"):
        MBRLCLI(fit_args("cartpole_dqn.yaml", "--ckpt_path", ckpt_path, "--experiment_name", "empty"))


def _stored_frames() -> int:
    """Frames of the checkpoint in the run's artifact store (0 while there is none)."""
    stored = list(Path("mlruns").rglob("artifacts/checkpoints/last.ckpt"))
    return torch.load(stored[0], weights_only=True)["mbrl"]["frames"] if stored else 0


def test_a_killed_run_is_resumable_from_the_artifact_store(subprocess_env) -> None:
    """SIGKILL right after a checkpoint is published; the run continues from it with no gap in its metrics."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    command = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py"),
               *fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "1000000")]
    # A store slow to commit: MLflow's queue holds metrics for 2 s. A checkpoint published before
    # the metrics it follows are written would lose them to the kill.
    env = {**subprocess_env, "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "2"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while _stored_frames() < 768:  # the third checkpoint: two earlier intervals of metrics
            assert process.poll() is None, "fit exited before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint uploaded in time"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = _stored_frames()
    shutil.rmtree("checkpoints", ignore_errors=True)  # only the artifact store keeps it now
    client = MlflowClient(tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("cartpole_dqn").experiment_id])
    before = {m.step for m in client.get_metric_history(run.info.run_id, "train/env_frames")}
    assert set(range(64, killed_at + 1, 64)) <= before, "metrics before the published checkpoint were lost"

    resumed = run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "1536", "--ckpt_path", "last"))
    assert resumed.model.frames == 1536 and resumed.resume.frames == killed_at
    # Frames after the checkpoint are collected again, so their steps repeat; the curve has no gap
    # and ends at the budget.
    steps = _frame_steps(resumed.trainer.logger.run_id)
    assert set(steps) == set(range(64, 1537, 64)) and steps[-1] == 1536
