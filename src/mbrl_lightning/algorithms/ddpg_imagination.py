"""DDPG with imagination entropy: a bonus for states whose imagined futures spread apart."""

from __future__ import annotations

from mbrl_lightning.algorithms.ddpg import DDPG
from mbrl_lightning.algorithms.imagination_bonus import DEFAULT_LEARNER, ImaginationBonus, ImaginationFactory

__all__ = ["DEFAULT_LEARNER", "ImaginationDDPG", "ImaginationFactory"]


class ImaginationDDPG(ImaginationBonus, DDPG):
    """DDPG whose critic targets include the imagination-entropy bonus of each sampled state (see :class:`ImaginationBonus`)."""
