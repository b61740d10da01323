"""A network whose observation input is standardised by running statistics it reads but does not own."""

from __future__ import annotations

import torch
from torch import nn

from mbrl_lightning.world_models.normalization import RunningNormalizer

# Stable-Baselines3's VecNormalize bound (clip_obs): a rare far-out observation stays finite.
CLIP = 10.0


class NormalizedInput(nn.Module):
    """``net((observation - mean) / std, *rest)``, clipped to ±10, with the statistics of a shared normaliser.

    The normaliser is held outside this module's parameters and buffers: the learner owns (and
    checkpoints) it once, while TorchRL losses copy and stack the networks' own tensors (twin
    critics, target networks), which would otherwise freeze or Polyak-average the statistics.
    """

    def __init__(self, net: nn.Module, normalizer: RunningNormalizer) -> None:
        super().__init__()
        self.net = net
        self.__dict__["normalizer"] = normalizer

    def forward(self, observation: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        """The wrapped network on the standardised observation and the other inputs unchanged."""
        return self.net(self.normalizer.normalize(observation).clamp(-CLIP, CLIP), *rest)
