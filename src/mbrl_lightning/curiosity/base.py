"""The curiosity contract: an intrinsic reward per transition and a loss that trains it."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from tensordict import TensorDictBase
from torch import nn

from mbrl_lightning.world_models.normalization import RunningNormalizer


class Curiosity(nn.Module, ABC):
    """Rewards transitions the agent cannot yet predict.

    Raw novelty scores differ in scale between methods and drift as the module trains, so
    :meth:`intrinsic_reward` divides them by a running standard deviation of the raw scores of
    real transitions (updated with :meth:`observe`).

    Args:
        observation_size: derived from the env.
        action_size: derived from the env (one-hot width for discrete actions).
    """

    def __init__(self, observation_size: int, action_size: int) -> None:
        super().__init__()
        self.observation_size = observation_size
        self.action_size = action_size
        self.reward_scale = RunningNormalizer(1)

    @abstractmethod
    def novelty(self, transitions: TensorDictBase) -> torch.Tensor:
        """Raw novelty of each transition, shape ``[batch]``, without gradients."""

    @abstractmethod
    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """Named loss terms (keys starting with ``loss_``) that train the module."""

    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Fold the raw novelty of real transitions into the running scale."""
        self.reward_scale.update(self.novelty(transitions).unsqueeze(-1))

    @torch.no_grad()
    def intrinsic_reward(self, transitions: TensorDictBase) -> torch.Tensor:
        """Novelty in units of its running standard deviation, shape ``[batch]``."""
        novelty = self.novelty(transitions)
        return novelty / self.reward_scale.stats(novelty.dtype)[1].squeeze(-1)
