"""The curiosity contract: an intrinsic reward per transition and a loss that trains it."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from tensordict import TensorDictBase
from torch import nn

from mbrl_lightning.world_models.normalization import RunningNormalizer


class Curiosity(nn.Module, ABC):
    """Rewards transitions the agent cannot yet predict.

    The contract: :meth:`novelty` scores transitions, :meth:`observe` folds real transitions into
    the module's statistics, :meth:`loss` trains it, and :meth:`intrinsic_reward` is always
    ``normalize(novelty)``. Raw novelty scores differ in scale between methods and drift as the
    module trains, so the default :meth:`normalize` divides them by a running standard deviation
    of the raw scores of real transitions (``reward_scale``, updated by :meth:`observe`). A module
    whose score is scale-free by construction sets ``running_scale = False`` and bounds it in
    :meth:`normalize` instead (imagination entropy's tanh squash); it then keeps no running scale.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env (one-hot width for discrete actions).
    """

    running_scale = True

    def __init__(self, observation_size: int, action_size: int) -> None:
        super().__init__()
        self.observation_size = observation_size
        self.action_size = action_size
        self.reward_scale = RunningNormalizer(1) if self.running_scale else None

    @abstractmethod
    def novelty(self, transitions: TensorDictBase) -> torch.Tensor:
        """Raw novelty of each transition, shape ``[batch]``, without gradients."""

    @abstractmethod
    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """Named loss terms (keys starting with ``loss_``) that train the module."""

    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Fold the raw novelty of real transitions into the running scale (when the module keeps one)."""
        if self.reward_scale is not None:
            self.reward_scale.update(self.novelty(transitions).unsqueeze(-1))

    def normalize(self, novelty: torch.Tensor) -> torch.Tensor:
        """Novelty in units of its running standard deviation."""
        return novelty / self.reward_scale.stats(novelty.dtype)[1].squeeze(-1)

    @torch.no_grad()
    def intrinsic_reward(self, transitions: TensorDictBase) -> torch.Tensor:
        """``normalize(novelty)`` of each transition, shape ``[batch]``."""
        return self.normalize(self.novelty(transitions))
