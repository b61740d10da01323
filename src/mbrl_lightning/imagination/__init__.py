"""Imagination: batched rollouts of a policy inside a learned world model."""

from mbrl_lightning.imagination.rollout import Propagation, imagine

__all__ = ["Propagation", "imagine"]
