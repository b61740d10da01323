"""Two CPU processes (DDP over gloo): global frame count, per-rank data, synchronised weights, one MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from conftest import CONF_DIR, REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

TOTAL_FRAMES = 1024
FRAMES_PER_BATCH = 128


def test_two_process_ddp_counts_global_frames_and_logs_once(subprocess_env, tmp_path) -> None:
    env = dict(subprocess_env)
    # The worktree's code in both ranks (Lightning re-launches this command for rank 1).
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")])
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "fit.py"), "--config", str(CONF_DIR / "cartpole_dqn.yaml"),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--seed_everything", "5",
        "--model.total_frames", str(TOTAL_FRAMES), "--model.frames_per_batch", str(FRAMES_PER_BATCH),
        "--model.learning_starts", "128", "--model.updates_per_batch", "2",
        "--model.eval_episodes", "2", "--model.eval_every_frames", "512", "--checkpoint.every_n_frames", "512",
        "--trainer.callbacks+=ddp_probe.RankReport", f"--trainer.callbacks.folder={tmp_path / 'ranks'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"rank{k}.json").read_text()) for k in (0, 1)]

    # The budget and the frame count are global: each rank collected half of it into its own buffer.
    assert [r["frames"] for r in ranks] == [TOTAL_FRAMES, TOTAL_FRAMES]
    assert [r["buffer_size"] for r in ranks] == [TOTAL_FRAMES // 2, TOTAL_FRAMES // 2]
    # Different env seeds per rank: the shards hold different transitions.
    assert ranks[0]["buffer_observation_sum"] != ranks[1]["buffer_observation_sum"]
    # Synchronised gradients keep the replicas identical although their data differ.
    torch.testing.assert_close(torch.tensor(ranks[0]["weights"]), torch.tensor(ranks[1]["weights"]), rtol=0, atol=0)

    # Only rank 0 talks to MLflow: one run, global frames on the x-axis, one set of checkpoint artifacts.
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("cartpole_dqn")
    (run,) = client.search_runs([experiment.experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/env_frames")]
    assert steps == list(range(2 * FRAMES_PER_BATCH, TOTAL_FRAMES + 1, 2 * FRAMES_PER_BATCH))
    assert run.data.metrics["train/env_frames"] == TOTAL_FRAMES
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert artifacts == ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]
    assert result.stdout.count("MLflow run:") == 1
