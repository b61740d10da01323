"""Build batched TorchRL environments from gymnasium ids."""

from __future__ import annotations

import difflib
from typing import Any, Literal

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode
from torchrl.envs import (
    Compose,
    DoubleToFloat,
    EnvBase,
    GymWrapper,
    InitTracker,
    ObservationNorm,
    RewardSum,
    StepCounter,
    TransformedEnv,
)

from mbrl_lightning.envs.episode_replay import EpisodeRecorder
from mbrl_lightning.errors import ConfigurationError

Vectorization = Literal["sync", "async"]
# Seed of the random-policy frames that fix the observation statistics: a constant, so every run,
# evaluation env and resumed run of an experiment normalises with the same numbers.
OBSERVATION_STATS_SEED = 12345


def _register_optional_suites(env_id: str) -> None:
    """Register the env suites that live in separate packages, only when the id needs them."""
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    elif "Minitaur" in env_id:
        from mbrl_lightning.envs.minitaur import register_minitaur

        register_minitaur()
    elif "Bullet" in env_id:
        # pybullet's own pybullet_envs imports the retired gym; this package registers gymnasium ids.
        import pybullet_envs_gymnasium

        gym.register_envs(pybullet_envs_gymnasium)
    elif env_id.startswith("mbrl_lightning/"):
        import mbrl_lightning.envs.arm  # noqa: F401  (registers the project's own envs)


def validate_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """Return the gymnasium spec of ``env_id`` or raise a one-line error with suggestions."""
    _register_optional_suites(env_id)
    try:
        return gym.spec(env_id)
    except gym.error.Error as error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        message = " ".join(str(error).split())
        raise ConfigurationError(f"env.env_id={env_id!r}: {message}{hint}") from None


class _DropTransitionProbability(gym.Wrapper):
    """Remove the ``prob`` info of toy-text envs, which no learner reads.

    Its dtype is int after a reset and float after a step, so a vector env that resets some copies
    on the same step builds it with either dtype and TorchRL's final-info copy fails.
    """

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        return observation, _without_prob(info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, _without_prob(info)


def _without_prob(info: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in info.items() if key != "prob"}


class EnvFactory:
    """Makes the training and evaluation environments of a run from a gymnasium id.

    Copies of the environment are stepped in one process through gymnasium's synchronous
    vector env: for cheap simulators this is far faster than one subprocess per copy.
    Episodes reset on the step that ends them, and ``("next", "observation")`` holds the
    true final observation, so bootstrapping on truncation is correct. Envs with a Discrete
    observation space (toy-text) present states and actions as integer indices; all others keep
    TorchRL's default one-hot actions.

    Costly simulators (pybullet) can instead step each copy in its own subprocess
    (``vectorization: async``), which pays off only when a step costs far more than the
    inter-process round trip and there are free cores. With ``observation_norm_frames`` the
    observations are standardised by TorchRL's ``ObservationNorm`` with a per-feature mean and
    standard deviation measured once on that many random-policy frames (fixed seed).

    Args:
        env_id: gymnasium id, e.g. ``CartPole-v1``.
        num_envs: copies stepped together when collecting training data.
        max_episode_steps: overrides the id's time limit when set.
        env_kwargs: extra keyword arguments for ``gymnasium.make``.
        vectorization: ``sync`` (all copies in this process) or ``async`` (one subprocess per copy).
        observation_norm_frames: random-policy frames that fix the observation statistics (0: no normalisation).
        track_episode_starts: add an ``is_init`` flag (TorchRL ``InitTracker``), e.g. for OU exploration noise.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        vectorization: Vectorization = "sync",
        observation_norm_frames: int = 0,
        track_episode_starts: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ConfigurationError(f"env.num_envs={num_envs}: must be a positive integer.")
        if vectorization not in ("sync", "async"):
            raise ConfigurationError(f"env.vectorization={vectorization!r}: allowed values are 'sync', 'async'.")
        if observation_norm_frames < 0:
            raise ConfigurationError(f"env.observation_norm_frames={observation_norm_frames}: must be 0 or more.")
        self.spec = validate_env_id(env_id)
        self.env_id = env_id
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.env_kwargs = dict(env_kwargs or {})
        self.vectorization = vectorization
        self.observation_norm_frames = observation_norm_frames
        self.track_episode_starts = track_episode_starts
        self._observation_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def is_toy_text(self) -> bool:
        """Whether the env is one of gymnasium's toy-text envs, whose info carries ``prob``."""
        return "toy_text" in str(self.spec.entry_point)

    @property
    def episode_step_limit(self) -> int | None:
        """The time limit of one episode, when the environment has one."""
        return self.max_episode_steps or self.spec.max_episode_steps

    def make(self, num_envs: int | None = None, seed: int | None = None) -> EnvBase:
        """A batched env of ``num_envs`` copies (default: the training count), seeded if asked."""
        return self._make(num_envs, seed, normalize=self.observation_norm_frames > 0)

    def _make(self, num_envs: int | None, seed: int | None, normalize: bool) -> EnvBase:
        kwargs = dict(self.env_kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        vector_env = gym.make_vec(
            self.env_id,
            num_envs=num_envs or self.num_envs,
            vectorization_mode=self.vectorization,
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            # The recorder is outermost, so it sees exactly the actions the copy receives.
            wrappers=[_DropTransitionProbability, EpisodeRecorder] if self.is_toy_text else [EpisodeRecorder],
            **kwargs,
        )
        # TorchRL fills the final observation of copies that did not finish with the spec's zero, which
        # is no valid one-hot vector; integer encoding keeps Discrete states (toy-text envs) valid.
        integer_states = isinstance(vector_env.single_observation_space, gym.spaces.Discrete)
        wrapper = GymWrapper(vector_env, categorical_action_encoding=integer_states)
        transforms = self.transforms()
        if normalize:
            loc, scale = self.observation_stats()
            transforms.append(ObservationNorm(loc=loc, scale=scale, in_keys=["observation"], standard_normal=True))
        env = TransformedEnv(wrapper, transforms, auto_unwrap=True)
        if seed is not None:
            env.set_seed(seed)
        return env

    def transforms(self) -> Compose:
        """Transforms every algorithm relies on: step and return counters, float32 data."""
        transforms = Compose(StepCounter(), RewardSum(), DoubleToFloat())
        if self.track_episode_starts:
            transforms.append(InitTracker())
        return transforms

    @torch.no_grad()
    def observation_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and standard deviation of observations under a uniformly random policy."""
        if self._observation_stats is None:
            env = self._make(num_envs=1, seed=OBSERVATION_STATS_SEED, normalize=False)
            try:
                with torch.random.fork_rng():
                    torch.manual_seed(OBSERVATION_STATS_SEED)
                    rollout = env.rollout(self.observation_norm_frames, break_when_any_done=False)
            finally:
                env.close()
            observations = rollout["observation"].reshape(-1, rollout["observation"].shape[-1])
            # Features that never move under a random policy keep unit scale instead of exploding.
            scale = observations.std(0)
            scale = torch.where(scale > 1e-6, scale, torch.ones_like(scale))
            self._observation_stats = (observations.mean(0), scale)
        return self._observation_stats

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env_id={self.env_id!r}, num_envs={self.num_envs})"
