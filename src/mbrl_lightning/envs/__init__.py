"""Environment factories: a gymnasium id plus options in, a TorchRL env out."""

from mbrl_lightning.envs.atari import AtariEnvFactory
from mbrl_lightning.envs.factory import EnvFactory

__all__ = ["AtariEnvFactory", "EnvFactory"]
