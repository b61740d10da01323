"""Ensembles of fully connected networks computed as one batched matrix product per layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """``num_members`` independent linear layers applied to inputs of shape ``[members, batch, in]``.

    Args:
        num_members: ensemble size.
        in_features: input width.
        out_features: output width.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        # Same initialisation as nn.Linear, member by member.
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``[members, batch, in] -> [members, batch, out]``; with ``members``, only those members' layers run."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])

    def extra_repr(self) -> str:
        members, in_features, out_features = self.weight.shape
        return f"num_members={members}, in_features={in_features}, out_features={out_features}"


class EnsembleMLP(nn.Sequential):
    """An ensemble of MLPs with the same shape and independent weights.

    Args:
        num_members: ensemble size.
        in_features: input width.
        out_features: output width.
        hidden_sizes: widths of the hidden layers.
        activation: activation class after every hidden layer.
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (200, 200, 200),
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [EnsembleLinear(num_members, width, hidden), activation()]
            width = hidden
        layers.append(EnsembleLinear(num_members, width, out_features))
        super().__init__(*layers)
        self.num_members = num_members

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``[members, batch, in] -> [members, batch, out]``; with ``members``, inputs ``[len(members), batch, in]``."""
        for layer in self:
            x = layer(x, members) if isinstance(layer, EnsembleLinear) else layer(x)
        return x
