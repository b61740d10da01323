"""The env factory: specs, autoreset semantics, seeding and errors."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError


def test_cartpole_specs_are_consistent() -> None:
    env = EnvFactory("CartPole-v1", num_envs=4).make(seed=0)
    check_env_specs(env)
    assert env.batch_size == torch.Size([4])
    assert env.observation_spec["observation"].shape == torch.Size([4, 4])


def test_final_observation_is_kept_and_next_step_starts_a_new_episode() -> None:
    env = EnvFactory("CartPole-v1", num_envs=3).make(seed=1)
    rollout = env.rollout(200, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    copy, step = done.nonzero()[0].tolist()
    final = rollout["next", "observation"][copy, step]
    # CartPole terminates when |x| > 2.4 or |angle| > 0.2095 rad: the stored final state must show it.
    assert final[0].abs() > 2.4 or final[2].abs() > 0.2095
    restarted = rollout["observation"][copy, step + 1]
    assert restarted.abs().max() <= 0.05  # reset states are drawn from U(-0.05, 0.05)
    assert rollout["step_count"][copy, step + 1].item() == 0
    assert rollout["next", "episode_reward"][copy, step].item() == rollout["next", "step_count"][copy, step].item()


def test_same_seed_same_episodes() -> None:
    factory = EnvFactory("CartPole-v1", num_envs=2)
    first = factory.make(seed=7).rollout(50, break_when_any_done=False)
    second = factory.make(seed=7).rollout(50, policy=None, break_when_any_done=False)
    torch.testing.assert_close(first["observation"][:, 0], second["observation"][:, 0])


def test_unknown_env_id_suggests_close_ids() -> None:
    with pytest.raises(ConfigurationError, match=r"env_id='CartPol-v1'.*CartPole-v1"):
        EnvFactory("CartPol-v1")


def test_num_envs_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="num_envs=0"):
        EnvFactory("CartPole-v1", num_envs=0)

