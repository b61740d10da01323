"""Exploration by ensemble disagreement (Pathak et al. 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from mbrl_lightning.curiosity.base import Curiosity
from mbrl_lightning.world_models import GaussianEnsembleWorldModel


class EnsembleDisagreement(Curiosity):
    """Novelty = spread of an ensemble of dynamics models' predicted next states.

    Members agree where they have data and disagree elsewhere, so the reward measures what the
    agent has not seen (epistemic uncertainty), not noise it can never predict.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env.
        num_members: ensemble size.
        hidden_sizes: hidden layers of every member.
    """

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        num_members: int = 5,
        hidden_sizes: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__(observation_size, action_size)
        self.ensemble = GaussianEnsembleWorldModel(
            observation_size, action_size, num_members=num_members, num_elites=num_members, hidden_sizes=hidden_sizes
        )

    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Update the ensemble's normalisers, then the reward scale."""
        self.ensemble.observe(transitions)
        super().observe(transitions)

    @torch.no_grad()
    def novelty(self, transitions: TensorDictBase) -> torch.Tensor:
        """Standard deviation of the members' next-state predictions (normalised units)."""
        return self.ensemble.disagreement(transitions["observation"], transitions["action"])

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """The ensemble's own loss terms (bootstrap NLL and termination)."""
        return self.ensemble.loss(transitions)
