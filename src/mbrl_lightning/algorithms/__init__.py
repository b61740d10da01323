"""Algorithms: the shared RL LightningModule and one thin subclass per algorithm."""

from mbrl_lightning.algorithms.atari_dqn import AtariDQN
from mbrl_lightning.algorithms.base import RLModule
from mbrl_lightning.algorithms.dqn import DQN

__all__ = ["AtariDQN", "DQN", "RLModule"]
