"""Where a convolutional Q-network looks: activation maps of its last conv layer over the input frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def last_conv_attention(network: nn.Module, frames: torch.Tensor, conv: nn.Conv2d | None = None) -> torch.Tensor:
    """Attention maps ``[batch, height, width]`` in [0, 1] of ``network`` on ``frames`` ``[batch, C, H, W]``.

    The map is the mean absolute activation over the channels of the last convolution (or
    ``conv``), upsampled bilinearly to the input resolution and scaled to [0, 1] per frame: high
    where the features the Q-values are computed from respond (the imagination-entropy design's visualisation).
    """
    conv = conv or getattr(network, "last_conv", None) or [m for m in network.modules() if isinstance(m, nn.Conv2d)][-1]
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        network(frames)
    finally:
        handle.remove()
    activation = captured[0].abs().mean(-3, keepdim=True)
    maps = F.interpolate(activation, size=frames.shape[-2:], mode="bilinear", align_corners=False).squeeze(-3)
    low = maps.flatten(-2).min(-1).values[..., None, None]
    high = maps.flatten(-2).max(-1).values[..., None, None]
    return (maps - low) / (high - low).clamp_min(1e-8)
