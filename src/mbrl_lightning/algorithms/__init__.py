"""Algorithms: the shared RL LightningModule and one thin subclass per algorithm."""

from mbrl_lightning.algorithms.atari_dqn import AtariDQN
from mbrl_lightning.algorithms.atari_spr import AtariSPR
from mbrl_lightning.algorithms.base import RLModule
from mbrl_lightning.algorithms.ddpg import DDPG
from mbrl_lightning.algorithms.ddpg_imagination import ImaginationDDPG
from mbrl_lightning.algorithms.dqn import DQN
from mbrl_lightning.algorithms.imagination_bonus import ImaginationSAC, ImaginationTD3
from mbrl_lightning.algorithms.mbpo import MBPO
from mbrl_lightning.algorithms.sac import SAC
from mbrl_lightning.algorithms.td3 import TD3

__all__ = ["AtariDQN", "AtariSPR", "DDPG", "DQN", "ImaginationDDPG", "ImaginationSAC", "ImaginationTD3", "MBPO",
           "RLModule", "SAC", "TD3"]
