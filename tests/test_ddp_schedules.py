"""Replay learners under DDP: exploration, learning_starts and update_to_data count the frames of all ranks.

A rank of 2 is simulated by its trainer's ``world_size`` (no process group: these steps make no
collective call); its batch of 32 frames is its half of a 64-frame batch.
"""

from __future__ import annotations

from types import SimpleNamespace

from mbrl_lightning.algorithms import DDPG, DQN
from mbrl_lightning.envs import EnvFactory


def _rank_of_two(model):
    model._trainer = SimpleNamespace(world_size=2, global_rank=0)
    return model


def _transitions(env_id: str, count: int):
    return EnvFactory(env_id).make(seed=0).rollout(count, break_when_any_done=False).reshape(-1)


def test_under_ddp_epsilon_and_learning_starts_count_the_frames_of_all_ranks() -> None:
    """On 2 ranks a rank's 32 frames are half of a 64-frame batch: epsilon anneals by 64, learning waits for 96 in all."""
    model = _rank_of_two(DQN(EnvFactory("CartPole-v1"), eps_init=1.0, eps_end=0.0, eps_anneal_frames=256,
                             learning_starts=96, total_frames=1000, frames_per_batch=64))
    rollout = _transitions("CartPole-v1", 48)
    model.update(rollout[:32])
    assert abs(model.epsilon - 0.75) < 1e-6
    assert not model.learning_started()  # 64 transitions in both shards
    model.store(rollout[32:])
    assert model.learning_started()  # 48 here, 96 in both


def test_under_ddp_update_to_data_takes_its_steps_per_frame_of_all_ranks() -> None:
    """update_to_data 0.5: a rank's 32 frames of a 64-frame batch take 32 gradient steps, as one process would."""
    model = _rank_of_two(DDPG(EnvFactory("Pendulum-v1"), update_to_data=0.5, learning_starts=0, batch_size=8,
                              total_frames=1000, frames_per_batch=64))
    steps = []
    model.gradient_update = lambda sample: steps.append(sample.numel()) or {}
    model.update(_transitions("Pendulum-v1", 32))
    assert steps == [8] * 32
