"""Deterministic policy evaluation and rendered episodes, shared by training, callbacks and scripts."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type, step_mdp

from mbrl_lightning.envs import EnvFactory

# Offset between the training and evaluation env seeds, so the two never replay the same episodes.
EVAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class EvaluationResult:
    """Returns and lengths of the first episode of each evaluation env copy."""

    returns: torch.Tensor
    lengths: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """The ``eval/*`` metrics of the metric contract."""
        return {
            "eval/return_mean": self.returns.mean().item(),
            "eval/return_std": self.returns.std(unbiased=False).item(),
            "eval/episode_length": self.lengths.float().mean().item(),
        }


@dataclass(frozen=True)
class RecordedEpisode:
    """One rendered episode: one RGB frame per decision, its return and length."""

    frames: list[np.ndarray]
    episode_return: float
    length: int


@torch.no_grad()
def evaluate_policy(
    env_factory: EnvFactory,
    policy: TensorDictModuleBase,
    episodes: int,
    seed: int,
    max_steps: int,
) -> EvaluationResult:
    """Run ``episodes`` deterministic episodes in parallel on a fresh env seeded ``seed``, ``seed + 1``, ...

    A fresh env per evaluation: a reused vector env whose copies finished on the last step of the
    previous evaluation would hand stale first observations to the policy.
    """
    env = env_factory.make(num_envs=episodes, seed=seed)
    try:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            rollout = env.rollout(max_steps, policy=policy, break_when_any_done=False, auto_cast_to_device=True).cpu()
    finally:
        env.close()
    done = rollout["next", "done"].squeeze(-1)
    steps = done.shape[-1]
    # The first episode of each copy counts; a copy that never finished counts as capped.
    never_done = torch.full(done.shape[:1], steps - 1, dtype=torch.long)
    first_done = torch.where(done.any(-1), done.float().argmax(-1), never_done)
    rows = torch.arange(done.shape[0])
    returns = rollout["next", "episode_reward"].squeeze(-1)[rows, first_done]
    lengths = rollout["next", "step_count"].squeeze(-1)[rows, first_done]
    return EvaluationResult(returns=returns, lengths=lengths)


def rendering_factory(env_factory: EnvFactory) -> EnvFactory:
    """A copy of ``env_factory`` whose envs render RGB arrays (classic control, pybullet and ALE alike)."""
    # Headless machines have no display: SDL (pygame, used by classic control) must not look for one.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    rendering = copy.copy(env_factory)
    rendering.env_kwargs = {**env_factory.env_kwargs, "render_mode": "rgb_array"}
    return rendering


def _render(env: EnvBase) -> np.ndarray:
    """The RGB frame of the single copy of a batched gymnasium-backed TorchRL env."""
    frames = env.base_env._env.render()  # the gymnasium vector env under TorchRL's GymWrapper
    frame = frames[0] if isinstance(frames, (tuple, list)) else frames
    return np.asarray(frame, dtype=np.uint8)


@torch.no_grad()
def record_episode(
    env_factory: EnvFactory,
    policy: TensorDictModuleBase,
    seed: int,
    max_steps: int,
) -> RecordedEpisode:
    """Play one deterministic episode on an env seeded ``seed`` and keep the frame of every decision.

    With the same seed this is the first episode of :func:`evaluate_policy`. The env resets a
    finished copy within the step that ends it, so the frame after the last step would show the
    next episode: the video holds the ``length`` frames the policy acted on.
    """
    env = rendering_factory(env_factory).make(num_envs=1, seed=seed)
    frames: list[np.ndarray] = []
    try:
        td: TensorDictBase = env.reset()
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            for _ in range(max_steps):
                frames.append(_render(env))
                stepped = env.step(policy(td.to(_device(policy))).cpu())
                if bool(stepped["next", "done"].any()):
                    break
                td = step_mdp(stepped)
    finally:
        env.close()
    return RecordedEpisode(
        frames=frames,
        episode_return=float(stepped["next", "episode_reward"].sum()),
        length=int(stepped["next", "step_count"].sum()),
    )


def _device(policy: TensorDictModuleBase) -> torch.device:
    parameters = policy.parameters() if isinstance(policy, torch.nn.Module) else iter(())
    parameter = next(parameters, None)
    return parameter.device if parameter is not None else torch.device("cpu")
