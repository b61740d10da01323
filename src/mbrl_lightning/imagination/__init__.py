"""Imagination: batched rollouts of a policy inside a learned world model."""

from mbrl_lightning.imagination.imagined_replay import ImaginedReplay
from mbrl_lightning.imagination.rollout import imagine
from mbrl_lightning.imagination.trajectory_sampling import Propagation, TrajectorySampler

__all__ = ["ImaginedReplay", "Propagation", "TrajectorySampler", "imagine"]
