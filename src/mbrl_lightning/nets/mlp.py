"""Multi-layer perceptrons with sizes supplied by the algorithm from the env specs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchrl.modules import MLP as TorchRLMLP


class MLP(TorchRLMLP):
    """A fully connected network whose input and output sizes come from the environment.

    In a YAML the sizes are left out: the algorithm calls the configured class with
    ``(in_features, out_features)`` derived from the observation and action specs.

    Args:
        in_features: input width (derived, never typed by users).
        out_features: output width (derived, never typed by users).
        hidden_sizes: widths of the hidden layers.
        activation: activation class placed after every hidden layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            in_features=in_features,
            out_features=out_features,
            num_cells=list(hidden_sizes),
            activation_class=activation,
        )
