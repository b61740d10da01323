"""In-flight episodes survive a checkpoint: replayed exactly where the env allows, restarted where not."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import fit_args, run_fit

from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.envs.atari import AtariEnvFactory
from mbrl_lightning.envs.episode_replay import EpisodeRecorder, restore_episodes, snapshot_episodes

FAMILIES = {
    "dqn_imagination": ("cartpole_dqn_imagination.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
                        "--model.learning_starts", "128", "--model.model_learning.init_args.updates_per_batch", "4",
                        "--model.imagined.min_confidence", "0"),
    # Annealing is tied to the budget, which the first half of the run sets shorter.
    "ppo": ("cartpole_ppo.yaml", "--model.anneal_lr", "false", "--model.epochs", "4"),
    "dyna_q": ("cliffwalking_dynaq.yaml",),
}


class _UnseededNoise(gym.Wrapper):
    """Observation noise from a generator the env's seed does not reach: no replay can reproduce it."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.noise = np.random.default_rng()

    def step(self, action):
        observation, *rest = self.env.step(action)
        return observation + self.noise.normal(size=observation.shape).astype(observation.dtype), *rest


def _played(env: gym.Env, steps: int) -> EpisodeRecorder:
    recorder = EpisodeRecorder(env)
    recorder.reset(seed=5)
    recorder.step(0)
    recorder.reset()  # a second episode, started from the env's generator as autoreset does
    for step in range(steps):
        recorder.step(step % 2)
    return recorder


def test_a_replayed_episode_reaches_the_same_state_and_generator() -> None:
    original = _played(gym.make("CartPole-v1"), steps=7)
    restored = EpisodeRecorder(gym.make("CartPole-v1"))
    assert restored.restore(original.snapshot())
    np.testing.assert_array_equal(restored.unwrapped.state, original.unwrapped.state)
    # Both continue identically, including the draws of the next reset.
    for recorder in (original, restored):
        recorder.reset()
    np.testing.assert_array_equal(restored.unwrapped.state, original.unwrapped.state)


def test_an_env_that_does_not_replay_is_detected() -> None:
    original = _played(_UnseededNoise(gym.make("CartPole-v1")), steps=3)
    restored = EpisodeRecorder(_UnseededNoise(gym.make("CartPole-v1")))
    assert not restored.restore(original.snapshot())


def test_an_atari_game_in_flight_is_restored_through_the_frame_stack() -> None:
    factory = AtariEnvFactory("ALE/MsPacman-v5", num_envs=2, repeat_action_probability=0.0)
    env = factory.make(seed=3)
    rollout = env.rollout(40, break_when_any_done=False)
    snapshots = snapshot_episodes(env)
    restored = factory.make(seed=99)
    restored.reset()
    assert restore_episodes(restored, snapshots)
    last_frames = rollout["next", "observation"][:, -1].numpy()
    for recorder, frames in zip(restored.base_env._env.envs, last_frames):
        np.testing.assert_array_equal(recorder._last_observation, frames)


def test_a_pybullet_episode_started_by_an_unseeded_reset_is_restored() -> None:
    """pybullet's robot draws its start pose from the env's generator object, shared by reference."""
    factory = EnvFactory("HalfCheetahBulletEnv-v0", num_envs=2)
    env = factory.make(seed=3)
    env.rollout(30, break_when_any_done=False)  # its reset is unseeded: the generator state is the seed
    snapshots = snapshot_episodes(env)
    assert all(snapshot["seed"] is None for snapshot in snapshots)
    restored = factory.make(seed=99)
    restored.reset()
    assert restore_episodes(restored, snapshots)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resume_mid_episode_continues_exactly_like_an_uninterrupted_run(family: str) -> None:
    config, *overrides = FAMILIES[family]
    shared = (*overrides, "--model.eval_every_frames", "512", "--model.eval_episodes", "2",
              "--checkpoint.every_n_frames", "256", "--seed_everything", "3")
    whole = run_fit(*fit_args(config, *shared, "--model.total_frames", "1024", "--experiment_name", "whole"))
    half = run_fit(*fit_args(config, *shared, "--model.total_frames", "512", "--experiment_name", "halves"))
    in_flight = half.model._stream.state_dict()
    assert in_flight and (in_flight["carrier"]["step_count"] > 0).any(), "the checkpoint must cut episodes"
    resumed = run_fit(*fit_args(config, *shared, "--model.total_frames", "1024", "--experiment_name", "halves",
                                "--ckpt_path", str(half.frame_checkpoint.last_path)))
    assert resumed.model.episodes == whole.model.episodes
    expected = whole.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
