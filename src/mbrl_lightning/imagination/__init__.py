"""Imagination: batched rollouts of a policy inside a learned world model."""

from mbrl_lightning.imagination.imagined_replay import ImaginedReplay
from mbrl_lightning.imagination.rollout import Propagation, imagine

__all__ = ["ImaginedReplay", "Propagation", "imagine"]
