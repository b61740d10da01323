"""Neural network building blocks shared by policies, values and world models."""

from mbrl_lightning.nets.attention import last_conv_attention
from mbrl_lightning.nets.conv import AtariQNet
from mbrl_lightning.nets.ensemble import EnsembleLinear, EnsembleMLP
from mbrl_lightning.nets.mlp import MLP

__all__ = ["AtariQNet", "last_conv_attention", "EnsembleLinear", "EnsembleMLP", "MLP"]
