"""Lightning callbacks: frame and best checkpoints uploaded to MLflow, frame progress bar, videos, plots."""

from mbrl_lightning.callbacks.attention import AttentionGif
from mbrl_lightning.callbacks.checkpoint import FrameCheckpoint
from mbrl_lightning.callbacks.interrupt import GracefulInterrupt
from mbrl_lightning.callbacks.k_step_plot import KStepErrorPlot
from mbrl_lightning.callbacks.plots import TrainingPlots
from mbrl_lightning.callbacks.progress import FrameProgressBar, FrameProgressLines
from mbrl_lightning.callbacks.stop import StopAtReturn
from mbrl_lightning.callbacks.video import EvalVideo

__all__ = [
    "AttentionGif",
    "EvalVideo",
    "FrameCheckpoint",
    "FrameProgressBar",
    "FrameProgressLines",
    "GracefulInterrupt",
    "KStepErrorPlot",
    "StopAtReturn",
    "TrainingPlots",
]
