"""The gymnasium port of pybullet's Minitaur: API checks, TorchRL specs, determinism, reward scale."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from conftest import REPO_ROOT
from gymnasium.utils.env_checker import check_env
from torchrl.envs.utils import check_env_specs

from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.envs.minitaur import register_minitaur

IDS = ["MinitaurBulletEnv-v0", "GhostMinitaurBulletEnv-v0"]
register_minitaur()


@pytest.mark.parametrize("env_id", IDS)
def test_passes_the_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    assert env.spec.max_episode_steps == 1000


@pytest.mark.parametrize("env_id", IDS)
def test_torchrl_specs_through_the_env_factory(env_id: str) -> None:
    env = EnvFactory(env_id, num_envs=2).make(seed=0)
    check_env_specs(env, seed=0)
    assert env.observation_spec["observation"].shape[-1] == 28
    assert env.action_spec.shape[-1] == 8
    env.close()


def test_observation_normalisation_standardises_random_policy_frames() -> None:
    factory = EnvFactory("GhostMinitaurBulletEnv-v0", observation_norm_frames=200)
    env = factory.make(seed=0)
    check_env_specs(env, seed=0)
    rollout = env.rollout(200, break_when_any_done=False)
    observations = rollout["observation"].reshape(-1, 28)
    raw_scale = factory.observation_stats()[1]
    assert raw_scale.max() / raw_scale.min() > 100  # velocities and torques dwarf the quaternion
    assert observations.abs().mean() < 3.0
    env.close()


def _random_episode(env_id: str, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    env = gym.make(env_id)
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, 8))
    observation, _ = env.reset(seed=seed)
    observations, rewards = [observation], []
    for action in actions:
        observation, reward, terminated, _, _ = env.step(action)
        observations.append(observation)
        rewards.append(reward)
        if terminated:
            break
    env.close()
    return np.stack(observations), np.asarray(rewards)


def test_deterministic_under_a_seed() -> None:
    first = _random_episode("MinitaurBulletEnv-v0", seed=3, steps=50)
    again = _random_episode("MinitaurBulletEnv-v0", seed=3, steps=50)
    other = _random_episode("MinitaurBulletEnv-v0", seed=4, steps=50)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    # Another seed draws other masses, friction and actions.
    assert not np.array_equal(first[0][:5], other[0][:5])


@pytest.mark.parametrize("env_id", IDS)
def test_random_policy_gets_the_expected_reward_scale(env_id: str) -> None:
    """A random policy neither walks nor falls: rewards are the small energy cost, about -1e-3 per step."""
    _, rewards = _random_episode(env_id, seed=0, steps=200)
    assert len(rewards) == 200  # standing robot, random leg motions: no fall
    assert -0.01 < rewards.mean() < 0.0
    assert -2.0 < rewards.sum() < 0.2


def test_port_does_not_import_gym() -> None:
    code = (
        "import sys, gymnasium; from mbrl_lightning.envs import EnvFactory; "
        "EnvFactory('MinitaurBulletEnv-v0').make(seed=0).rollout(3); "
        "assert 'gym' not in sys.modules and 'pybullet_envs' not in sys.modules, 'gym imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
