"""Two CPU processes (DDP over gloo): global frame count, per-rank data, synchronised weights, one MLflow run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import CONF_DIR, REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

TOTAL_FRAMES = 1024
FRAMES_PER_BATCH = 128


def _fit_two_ranks(env: dict[str, str], cwd: Path, config: str, *overrides: str,
                   timeout: int = 600) -> subprocess.CompletedProcess:
    """``scripts/fit.py`` on 2 CPU processes (gloo); fails the test on a non-zero exit or a hang."""
    env = dict(env)
    # The worktree's code in both ranks (Lightning re-launches this command for rank 1).
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")])
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "fit.py"), "--config", str(CONF_DIR / config),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", *overrides,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"the 2-process run did not end in {timeout} s (a rank waits for the other)") from expired
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _reports(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{k}.json").read_text()) for k in (0, 1)]


DQN = ("--seed_everything", "5", "--model.total_frames", str(TOTAL_FRAMES),
       "--model.frames_per_batch", str(FRAMES_PER_BATCH), "--model.learning_starts", "128",
       "--model.updates_per_batch", "2", "--model.eval_episodes", "2", "--model.eval_every_frames", "512",
       "--checkpoint.every_n_frames", "512", "--trainer.callbacks=ddp_probe.RankReport")


def test_two_process_ddp_counts_global_frames_logs_once_and_resumes_exactly(subprocess_env, tmp_path) -> None:
    """One 2-process run (checkpointed half-way), then a resume from that checkpoint that ends identical."""
    result = _fit_two_ranks(
        subprocess_env, tmp_path, "cartpole_dqn.yaml", *DQN, f"--trainer.callbacks.folder={tmp_path / 'ranks'}",
        f"--trainer.callbacks.save_at_frames={TOTAL_FRAMES // 2}",
    )
    ranks = _reports(tmp_path / "ranks")

    # The budget and the frame count are global: each rank collected half of it into its own buffer.
    assert [r["frames"] for r in ranks] == [TOTAL_FRAMES, TOTAL_FRAMES]
    assert [r["buffers"]["replay"]["size"] for r in ranks] == [TOTAL_FRAMES // 2, TOTAL_FRAMES // 2]
    # Different env seeds per rank: the shards hold different transitions.
    assert ranks[0]["buffers"]["replay"]["observation_sum"] != ranks[1]["buffers"]["replay"]["observation_sum"]
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

    # Interrupted at half the budget and resumed: each rank takes back its own replay shard, episodes
    # in flight and generators, and both end exactly where the uninterrupted ranks ended.
    _fit_two_ranks(subprocess_env, tmp_path, "cartpole_dqn.yaml", *DQN, f"--trainer.callbacks.folder={tmp_path / 'resumed'}",
                   "--ckpt_path", str(tmp_path / "ranks" / "mid.ckpt"))
    for uninterrupted, continued in zip(ranks, _reports(tmp_path / "resumed")):
        assert continued["snapshots"]["start"] == uninterrupted["snapshots"]["saved"], continued["rank"]
        assert continued["buffers"] == uninterrupted["buffers"], continued["rank"]
        assert continued["episodes"] == uninterrupted["episodes"], continued["rank"]
        assert continued["weights"] == uninterrupted["weights"], continued["rank"]


# MB-PPO keeps only the live imagined samples, so each rank's sample count (hence its minibatch
# count) differs; its replay shard, held-out data, beta and curiosity statistics are per rank too.
MBPPO_FRAMES = 512
MBPPO_MINIBATCH = 8
MBPPO = ("--seed_everything", "2", "--model.total_frames", str(MBPPO_FRAMES), "--model.frames_per_batch", "64",
         "--model.epochs", "2", "--model.minibatch_size", str(MBPPO_MINIBATCH), "--model.imagination_iterations", "2",
         "--model.model_learning.init_args.updates_per_batch", "4", "--model.min_rollouts", "8", "--model.max_rollouts", "16",
         # A world model that hardly learns predicts termination near 0.5, the threshold: imagined
         # rollouts end at different steps on each rank, so their sample counts differ.
         "--model.model_learning.init_args.lr", "1e-7",
         "--model.eval_every_frames", "512", "--model.eval_episodes", "2", "--checkpoint.every_n_frames", "0",
         "--plots.enabled", "false", "--trainer.callbacks=ddp_probe.RankReport")


def test_mbppo_ranks_take_equal_steps_and_each_rank_resumes_from_its_own_state(subprocess_env, tmp_path) -> None:
    """One uninterrupted 2-process run (checkpointed half-way), then a resume from that checkpoint.

    The resumed ranks start from exactly their saved state; their end state is not compared with
    the uninterrupted run's, which it does not yet match bit for bit on rank 1's last update.
    """
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _fit_two_ranks(subprocess_env, tmp_path, "cartpole_mbppo.yaml", *MBPPO, "--experiment_name", "whole",
                   f"--trainer.callbacks.folder={whole}", f"--trainer.callbacks.save_at_frames={MBPPO_FRAMES // 2}")
    ranks = _reports(whole)
    updates = [r["updates"] for r in ranks]
    # The ranks' sample counts asked for different numbers of minibatches, yet they took the same steps.
    natural = [[math.ceil(u["samples"] / MBPPO_MINIBATCH) for u in rank] for rank in updates]
    assert natural[0] != natural[1], updates
    assert [u["steps"] for u in updates[0]] == [u["steps"] for u in updates[1]]
    torch.testing.assert_close(torch.tensor(ranks[0]["weights"]), torch.tensor(ranks[1]["weights"]), rtol=0, atol=0)
    assert ranks[0]["buffers"] != ranks[1]["buffers"]

    _fit_two_ranks(subprocess_env, tmp_path, "cartpole_mbppo.yaml", *MBPPO, "--experiment_name", "resumed",
                   f"--trainer.callbacks.folder={resumed}", "--ckpt_path", str(whole / "mid.ckpt"))
    for uninterrupted, continued in zip(ranks, _reports(resumed)):
        # Each rank resumed from its own generators, replay shard and episodes in flight, as saved.
        assert continued["snapshots"]["start"] == uninterrupted["snapshots"]["saved"], continued["rank"]
        assert continued["frames"] == MBPPO_FRAMES
        assert continued["episodes"] == uninterrupted["episodes"], continued["rank"]
