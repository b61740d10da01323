"""Atari (ALE) environments with the DQN preprocessing of Mnih et al. (2015)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TimeLimit
from torchrl.envs import Compose, EnvBase, GymWrapper, RewardSum, StepCounter, TransformedEnv

from mbrl_lightning.envs.episode_replay import EpisodeRecorder
from mbrl_lightning.envs.factory import EnvFactory
from mbrl_lightning.errors import require


class AtariEnvFactory(EnvFactory):
    """ALE games as stacks of grayscale frames, stepped in one process.

    Every copy runs the full game: no reset on life loss and raw (unclipped) rewards, so
    ``train/episode_return`` and ``eval/return_mean`` are raw game scores. Episodic life and reward
    clipping are training-target choices and live in :class:`~mbrl_lightning.algorithms.AtariDQN`.

    One env step (agent step) is ``frame_skip`` emulator frames: the action repeats and the
    observation is the pixel-wise max of the last two frames (flicker removal). Observations are
    ``uint8`` tensors ``[frame_stack, screen_size, screen_size]``, oldest frame first; after a
    reset the stack is the first frame repeated.

    The per-frame work (no-op starts, skip with max-pool, grayscale, resize, stack) runs as
    gymnasium wrappers inside each copy of the synchronous vector env: the copies reset on the step
    that ends them, which TorchRL's ``CatFrames`` on the batched env cannot follow (it would stack
    frames of two episodes), and frame skipping with max-pool must see every emulator frame.

    Args:
        env_id: an ALE id, e.g. ``ALE/MsPacman-v5``.
        num_envs: copies stepped together when collecting training data.
        max_episode_steps: time limit in agent steps (default: ALE's 108,000 emulator frames).
        env_kwargs: extra keyword arguments for ``gymnasium.make``.
        frame_skip: emulator frames per agent step (action repeat, max over the last two).
        screen_size: side of the square grayscale frame.
        frame_stack: frames per observation.
        noop_max: at most this many no-op actions after each reset (random starts).
        repeat_action_probability: sticky actions (Machado et al. 2018); 0.25 is ALE v5's default, 0 disables.
    """

    def __init__(
        self,
        env_id: str = "ALE/MsPacman-v5",
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        frame_skip: int = 4,
        screen_size: int = 96,
        frame_stack: int = 4,
        noop_max: int = 30,
        repeat_action_probability: float = 0.25,
    ) -> None:
        require(env_id.startswith("ALE/"), "env.env_id", env_id, "AtariEnvFactory needs an ALE id such as 'ALE/MsPacman-v5'")
        super().__init__(env_id, num_envs, max_episode_steps, env_kwargs)
        require(frame_skip >= 1, "env.frame_skip", frame_skip, "must be a positive integer")
        require(screen_size >= 16, "env.screen_size", screen_size, "must be at least 16")
        require(frame_stack >= 1, "env.frame_stack", frame_stack, "must be a positive integer")
        require(noop_max >= 0, "env.noop_max", noop_max, "must be 0 or more")
        require(0.0 <= repeat_action_probability < 1.0, "env.repeat_action_probability",
                repeat_action_probability, "must lie in [0, 1)")
        self.frame_skip = frame_skip
        self.screen_size = screen_size
        self.frame_stack = frame_stack
        self.noop_max = noop_max
        self.repeat_action_probability = repeat_action_probability

    @property
    def episode_step_limit(self) -> int | None:
        """The time limit in agent steps: the configured one, else ALE's emulator-frame cap over the skip."""
        if self.max_episode_steps is not None:
            return self.max_episode_steps
        frames = self.spec.kwargs.get("max_num_frames_per_episode")
        return frames // self.frame_skip if frames else None

    def _wrap(self, env: gym.Env) -> gym.Env:
        env = AtariPreprocessing(
            env, noop_max=self.noop_max, frame_skip=self.frame_skip, screen_size=self.screen_size,
            terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False,
        )
        env = FrameStackObservation(env, self.frame_stack, padding_type="reset")
        # Outside the frame skip, so the limit counts agent steps, not emulator frames.
        return TimeLimit(env, self.max_episode_steps) if self.max_episode_steps is not None else env

    def make(self, num_envs: int | None = None, seed: int | None = None) -> EnvBase:
        """A batched env of ``num_envs`` copies (default: the training count), seeded if asked."""
        kwargs = dict(self.env_kwargs)
        # The skip happens in AtariPreprocessing (with max-pool), so ALE itself steps single frames.
        kwargs.update(frameskip=1, repeat_action_probability=self.repeat_action_probability)
        vector_env = gym.make_vec(
            self.env_id,
            num_envs=num_envs or self.num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            # The recorder makes in-flight games resumable (exact without sticky actions).
            wrappers=[self._wrap, EpisodeRecorder],
            **kwargs,
        )
        env = TransformedEnv(GymWrapper(vector_env), Compose(StepCounter(), RewardSum()), auto_unwrap=True)
        if seed is not None:
            env.set_seed(seed)
        return env

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env_id={self.env_id!r}, num_envs={self.num_envs}, frame_skip={self.frame_skip})"
