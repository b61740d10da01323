"""Lightning callbacks: frame-based checkpoints uploaded to MLflow, a frame progress bar."""

from mbrl_lightning.callbacks.checkpoint import FrameCheckpoint
from mbrl_lightning.callbacks.progress import FrameProgressBar

__all__ = ["FrameCheckpoint", "FrameProgressBar"]
