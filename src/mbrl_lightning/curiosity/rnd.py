"""Random Network Distillation (Burda et al. 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from mbrl_lightning.curiosity.base import Curiosity
from mbrl_lightning.nets import MLP
from mbrl_lightning.world_models.normalization import RunningNormalizer

OBSERVATION_CLIP = 5.0


class RND(Curiosity):
    """Novelty = error of a trained predictor imitating a fixed random network on the next state.

    The error shrinks on states the predictor has trained on and stays high on new ones.
    Observations are standardised by running statistics and clipped, as in the paper.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env (unused: RND looks at states only).
        feature_size: width of the random features.
        hidden_sizes: hidden layers of target and predictor.
    """

    def __init__(
        self, observation_size: int, action_size: int, feature_size: int = 64, hidden_sizes: Sequence[int] = (64, 64)
    ) -> None:
        super().__init__(observation_size, action_size)
        self.observation_normalizer = RunningNormalizer(observation_size)
        self.target = MLP(observation_size, feature_size, hidden_sizes, nn.ReLU)
        self.predictor = MLP(observation_size, feature_size, hidden_sizes, nn.ReLU)
        self.target.requires_grad_(False)

    def _inputs(self, transitions: TensorDictBase) -> torch.Tensor:
        normalized = self.observation_normalizer.normalize(transitions["next", "observation"])
        return normalized.clamp(-OBSERVATION_CLIP, OBSERVATION_CLIP)

    def _errors(self, transitions: TensorDictBase) -> torch.Tensor:
        inputs = self._inputs(transitions)
        return ((self.predictor(inputs) - self.target(inputs)) ** 2).mean(-1)

    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Update the observation statistics, then the reward scale."""
        self.observation_normalizer.update(transitions["next", "observation"])
        super().observe(transitions)

    @torch.no_grad()
    def novelty(self, transitions: TensorDictBase) -> torch.Tensor:
        """Squared prediction error of the random features of the next state."""
        return self._errors(transitions)

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """``loss_rnd``: the predictor's regression error."""
        return TensorDict(loss_rnd=self._errors(transitions).mean())
