"""Neural network building blocks shared by policies, values and world models."""

from mbrl_lightning.nets.ensemble import EnsembleLinear, EnsembleMLP
from mbrl_lightning.nets.mlp import MLP

__all__ = ["EnsembleLinear", "EnsembleMLP", "MLP"]
