"""Two CPU processes (DDP over gloo): global frame count, per-rank data, synchronised weights, one MLflow run, exact resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import CONF_DIR, REPO_ROOT
from ddp_converge import converge_on_rank
from mlflow.tracking import MlflowClient

from mbrl_lightning.algorithms.ppo import PPO
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import tracking_uri


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


def _uninterrupted(env: dict[str, str], folder: Path, config: str, frames: int, *overrides: str):
    """An uninterrupted 2-process run whose ranks write ``mid.ckpt`` at half its frames; its output and reports."""
    result = _fit_two_ranks(env, folder, config, *overrides, "--experiment_name", "whole",
                            f"--trainer.callbacks.folder={folder / 'whole'}",
                            f"--trainer.callbacks.save_at_frames={frames // 2}")
    return result, _reports(folder / "whole")


def _resumed(env: dict[str, str], folder: Path, config: str, *overrides: str) -> list[dict]:
    """The same run resumed from the uninterrupted run's ``mid.ckpt``; its reports."""
    _fit_two_ranks(env, folder, config, *overrides, f"--trainer.callbacks.folder={folder / 'resumed'}",
                   "--ckpt_path", str(folder / "whole" / "mid.ckpt"))
    return _reports(folder / "resumed")


def _reports(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{k}.json").read_text()) for k in (0, 1)]


def _assert_resumed_exactly(uninterrupted_ranks: list[dict], resumed_ranks: list[dict]) -> None:
    """Each resumed rank started from its own saved state and ended bit for bit where the uninterrupted rank ended."""
    for uninterrupted, continued in zip(uninterrupted_ranks, resumed_ranks):
        rank = continued["rank"]
        assert continued["snapshots"]["start"] == uninterrupted["snapshots"]["saved"], rank
        for key in ("frames", "episodes", "buffers", "parts", "optimizers", "scalars"):
            assert continued[key] == uninterrupted[key], (rank, key)
        assert continued["weights"] == uninterrupted["weights"], rank
        # The resumed run's updates are the uninterrupted run's second half, sample for sample.
        assert continued["updates"] == uninterrupted["updates"][-len(continued["updates"]):], rank


DQN_FRAMES = 512
DQN_BATCH = 128  # 64 frames per rank and step
DQN = ("cartpole_dqn.yaml", "--seed_everything", "5", "--model.total_frames", str(DQN_FRAMES),
       "--model.frames_per_batch", str(DQN_BATCH), "--model.learning_starts", "64",
       "--model.updates_per_batch", "2", "--model.eval_episodes", "2", "--model.eval_every_frames", "256",
       "--checkpoint.every_n_frames", "256", "--plots.enabled", "false", "--trainer.callbacks=ddp_probe.RankReport")


def test_two_process_dqn_counts_global_frames_logs_once_and_resumes_exactly(subprocess_env, tmp_path) -> None:
    """One 2-process DQN run (checkpointed half-way), then a resume from that checkpoint that ends identical."""
    result, ranks = _uninterrupted(subprocess_env, tmp_path, DQN[0], DQN_FRAMES, *DQN[1:])

    # The budget, the batch and the frame count are global: each rank collected half of them into its own shard.
    assert [r["frames"] for r in ranks] == [DQN_FRAMES, DQN_FRAMES]
    assert [r["buffers"]["replay"]["size"] for r in ranks] == [DQN_FRAMES // 2, DQN_FRAMES // 2]
    # Different env seeds per rank: the shards hold different transitions.
    assert ranks[0]["buffers"]["replay"]["observation_sum"] != ranks[1]["buffers"]["replay"]["observation_sum"]
    # Synchronised gradients keep the replicas identical although their data differ.
    torch.testing.assert_close(torch.tensor(ranks[0]["weights"]), torch.tensor(ranks[1]["weights"]), rtol=0, atol=0)

    # Only rank 0 talks to MLflow: one run, global frames on the x-axis (one step per batch of
    # both ranks, as in one process), one set of checkpoint artifacts.
    client = MlflowClient(tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("whole").experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/env_frames")]
    assert steps == list(range(DQN_BATCH, DQN_FRAMES + 1, DQN_BATCH))
    assert run.data.metrics["train/env_frames"] == DQN_FRAMES
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert artifacts == ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]
    assert result.stdout.count("MLflow run:") == 1

    # Interrupted at half the budget and resumed: each rank takes back its own replay shard, episodes
    # in flight and generators, and both end exactly where the uninterrupted ranks ended.
    _assert_resumed_exactly(ranks, _resumed(subprocess_env, tmp_path, *DQN))


# MB-PPO keeps only the live imagined samples, so each rank's sample count (hence its minibatch
# count) differs; its replay shard, held-out data and curiosity statistics are per rank too.
MBPPO_FRAMES = 256
MBPPO_MINIBATCH = 8  # 4 samples per rank and step
MBPPO = ("cartpole_mbppo.yaml", "--seed_everything", "2", "--model.total_frames", str(MBPPO_FRAMES),
         "--model.frames_per_batch", "64", "--model.epochs", "2", "--model.minibatch_size", str(MBPPO_MINIBATCH),
         "--model.imagination_iterations", "2", "--model.model_learning.init_args.updates_per_batch", "4",
         "--model.min_rollouts", "8", "--model.max_rollouts", "16",
         # A world model that hardly learns predicts termination near 0.5, the threshold: imagined
         # rollouts end at different steps on each rank, so their sample counts differ.
         "--model.model_learning.init_args.lr", "1e-7",
         "--model.eval_every_frames", str(MBPPO_FRAMES), "--model.eval_episodes", "2", "--checkpoint.every_n_frames", "0",
         "--plots.enabled", "false", "--trainer.callbacks=ddp_probe.RankReport")


def test_mbppo_ranks_take_equal_steps_and_resume_exactly(subprocess_env, tmp_path) -> None:
    """A 2-process MB-PPO run whose ranks need different step counts, then a resume that ends identical."""
    _, ranks = _uninterrupted(subprocess_env, tmp_path, MBPPO[0], MBPPO_FRAMES, *MBPPO[1:])
    updates = [r["updates"] for r in ranks]
    # The ranks' sample counts asked for different numbers of minibatches, yet they took the same steps.
    natural = [[math.ceil(u["samples"] / (MBPPO_MINIBATCH // 2)) for u in rank] for rank in updates]
    assert natural[0] != natural[1], updates
    assert [u["steps"] for u in updates[0]] == [u["steps"] for u in updates[1]]
    torch.testing.assert_close(torch.tensor(ranks[0]["weights"]), torch.tensor(ranks[1]["weights"]), rtol=0, atol=0)
    # Data are per rank; what is agreed over ranks (confidence, beta, running statistics) is equal.
    assert ranks[0]["buffers"] != ranks[1]["buffers"]
    assert ranks[0]["scalars"] == ranks[1]["scalars"] and ranks[0]["parts"] == ranks[1]["parts"]

    _assert_resumed_exactly(ranks, _resumed(subprocess_env, tmp_path, *MBPPO))


def _on_ranks(model, world_size: int):
    """``model`` as rank 0 of ``world_size`` DDP processes sees itself (no process group needed)."""
    model._trainer = SimpleNamespace(world_size=world_size, global_rank=0)
    return model


def test_a_ddp_rank_collects_its_share_of_each_batch_and_a_batch_that_does_not_split_is_refused() -> None:
    """On 2 ranks each collects half of ``frames_per_batch`` with half the env copies (all, where they do not halve)."""
    model = _on_ranks(PPO(EnvFactory("CartPole-v1", num_envs=8), frames_per_batch=128, minibatch_size=256), 2)
    assert model.rank_collection() == (4, 64)
    assert model.per_rank(model.minibatch_size) == 128
    one_copy = _on_ranks(PPO(EnvFactory("CartPole-v1", num_envs=1), frames_per_batch=128), 2)
    assert one_copy.rank_collection() == (1, 64)
    assert _on_ranks(PPO(EnvFactory("CartPole-v1", num_envs=8), frames_per_batch=128), 1).rank_collection() == (8, 128)

    # 3 copies do not halve: each rank steps all 3, so a rank's 9 / 2 frames cannot be collected.
    uneven = _on_ranks(PPO(EnvFactory("CartPole-v1", num_envs=3), frames_per_batch=9), 2)
    with pytest.raises(ConfigurationError, match=r"model\.frames_per_batch=9: .* 3 env copies; .* multiple of 6\."):
        uneven.setup("fit")


def test_world_model_training_to_convergence_agrees_over_ranks_holding_different_data(tmp_path) -> None:
    """MBPO's early-stopped model training on 2 gloo ranks holding 300 and 150 transitions (30% held out).

    The ranks need different minibatch counts per epoch and see different held-out errors; they
    must take the same steps, stop after the same epoch, end with the same weights and hold the
    running statistics of both ranks' data.
    """
    context = torch.multiprocessing.start_processes(
        converge_on_rank, args=(2, str(tmp_path / "group"), str(tmp_path)), nprocs=2, join=False, start_method="spawn")
    while not context.join(timeout=120):
        pass
    ranks = [json.loads((tmp_path / f"converge{k}.json").read_text()) for k in (0, 1)]
    assert ranks[0]["samples"] != ranks[1]["samples"]
    assert ranks[0]["steps"] == ranks[1]["steps"] and ranks[0]["epochs"] == ranks[1]["epochs"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # Every rank folded in both ranks' training shares (the held-out share never reaches the normaliser).
    assert ranks[0]["normalizer_mean"] == ranks[1]["normalizer_mean"]
    assert ranks[0]["normalizer_count"] == ranks[1]["normalizer_count"] > max(0.6 * r["samples"] for r in ranks)
