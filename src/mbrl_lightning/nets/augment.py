"""Augmentations of frame stacks: DrQ's random shift (Kostrikov et al. 2021) and SPR's random intensity."""

from __future__ import annotations

import torch

# Integer types as wide as one pixel's channels: such a pixel moves as one machine word.
PIXEL_WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Frames ``[batch, C, H, W]`` moved by ``shifts`` ``[batch, 2]`` (rows, columns) in ``[-pad, pad]``.

    The output pixel ``(i, j)`` of a sample is the input pixel ``(i + dy, j + dx)``, its row and
    column clamped to the frame: the crop of the replicate-padded frame at offset ``pad + (dy, dx)``,
    as DrQ's ``pad(4, replicate)`` then random ``84x84`` crop, without building the padded copy.
    Works on uint8 (no float conversion). The result is in channels-last layout (what the
    convolutions take) where a pixel's channels fit one machine word, such as 4 stacked uint8 frames.
    """
    batch, channels, height, width = frames.shape
    shifts = shifts.clamp(-pad, pad).to(frames.device)
    rows = (torch.arange(height, device=frames.device) + shifts[:, :1]).clamp(0, height - 1)
    cols = (torch.arange(width, device=frames.device) + shifts[:, 1:]).clamp(0, width - 1)
    word = PIXEL_WORDS.get(channels * frames.element_size())
    # With a word per pixel the frames move in channels-last layout, all channels of a pixel at
    # once: fewer, wider moves than single bytes in [C, H, W], and the layout change comes with it.
    grid = frames if word is None else frames.permute(0, 2, 3, 1).contiguous().view(word).view(batch, 1, height, width)
    planes = grid.shape[1]
    # Whole rows first (one index_select), then the columns (one gather): no per-pixel index is built.
    row_ids = rows[:, None, :] + torch.arange(batch * planes, device=frames.device).view(batch, planes, 1) * height
    moved = grid.reshape(-1, width).index_select(0, row_ids.reshape(-1)).view(batch, planes, height, width)
    moved = moved.gather(3, cols[:, None, None, :].expand(batch, planes, height, width))
    if word is None:
        return moved
    return moved.view(frames.dtype).view(batch, height, width, channels).permute(0, 3, 1, 2)


def random_shift(frames: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Frames ``[..., C, H, W]`` each moved by a uniform integer shift in ``[-pad, pad]`` per axis (the same for a stack)."""
    if pad == 0:
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    shifts = torch.randint(-pad, pad + 1, (flat.shape[0], 2))
    return shift_frames(flat, shifts, pad).reshape(frames.shape)


# SPR's intensity jitter (Schwarzer et al. 2021, its Intensity(scale=0.05) augmentation).
INTENSITY_SCALE = 0.05


def random_intensity(frames: torch.Tensor, scale: float = INTENSITY_SCALE) -> torch.Tensor:
    """Float frames ``[batch, C, H, W]``, each stack times ``1 + scale * clamp(N(0, 1), -2, 2)``, in place."""
    noise = torch.randn(frames.shape[0], 1, 1, 1, device=frames.device).clamp_(-2.0, 2.0)
    return frames.mul_(noise.mul_(scale).add_(1.0))
