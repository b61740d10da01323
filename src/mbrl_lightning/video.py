"""Write rendered frames as an MP4 (ffmpeg through imageio) or an animated GIF (Pillow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from mbrl_lightning.errors import ConfigurationError

VIDEO_FORMATS = ("mp4", "gif")


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write ``frames`` (H x W x 3 uint8) to ``path``; the suffix (.mp4 or .gif) picks the format.

    An MP4 keeps every frame; a GIF shows the same motion but Pillow merges identical consecutive
    frames into one longer frame.
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in VIDEO_FORMATS:
        raise ConfigurationError(f"video path {path}: the suffix must be one of {', '.join(VIDEO_FORMATS)}.")
    if not frames:
        raise ValueError("write_video: no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == "mp4":
        # H.264 encodes blocks of 16 pixels: pad instead of letting ffmpeg rescale (and blur) the frames.
        frames = [_pad_to_block(frame, 16) for frame in frames]
        imageio.mimwrite(path, frames, fps=fps, codec="libx264", quality=7, macro_block_size=1)
    else:
        imageio.mimwrite(path, frames, duration=1000 / fps, loop=0)
    return path


def read_video(path: str | Path) -> list[np.ndarray]:
    """Decode every frame of an MP4 or GIF (for checks and tests)."""
    return [np.asarray(frame) for frame in imageio.mimread(path, memtest=False)]


def _pad_to_block(frame: np.ndarray, block: int) -> np.ndarray:
    height, width = frame.shape[:2]
    pad_h, pad_w = -height % block, -width % block
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
