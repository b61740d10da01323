"""Lightning callbacks: frame checkpoints uploaded to MLflow, frame progress bar, diagnostics plots."""

from mbrl_lightning.callbacks.attention import AttentionGif
from mbrl_lightning.callbacks.checkpoint import FrameCheckpoint
from mbrl_lightning.callbacks.interrupt import GracefulInterrupt
from mbrl_lightning.callbacks.k_step_plot import KStepErrorPlot
from mbrl_lightning.callbacks.progress import FrameProgressBar
from mbrl_lightning.callbacks.stop import StopAtReturn

__all__ = ["AttentionGif", "FrameCheckpoint", "FrameProgressBar", "GracefulInterrupt", "KStepErrorPlot", "StopAtReturn"]
