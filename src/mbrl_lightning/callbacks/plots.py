"""Training figures of the run, drawn from its MLflow metrics and logged as artifacts."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger

from mbrl_lightning import plots
from mbrl_lightning.callbacks.progress import progress_unit
from mbrl_lightning.tracking.history import run_curves
from mbrl_lightning.tracking.store import flush_metrics

ARTIFACT_DIR = "plots"

FIGURES = {
    "score_per_episode": ("Score per episode", "training episodes (count)", "episode return (sum of rewards)"),
    "score_per_iteration": ("Score per iteration", "real environment frames", "episode return (sum of rewards)"),
    "real_vs_imagined_frames": ("Real vs imagined frames", "real environment frames", "transitions generated (cumulative)"),
}


def frame_axis_label(label: str, module: LightningModule) -> str:
    """``label``, or, where the module's budget counts agent steps (Atari), the agent steps its "frames" are."""
    if label == "real environment frames" and progress_unit(module) == "agent steps":
        return f"agent steps ({module.env.frame_skip} emulator frames each)"
    return label


class TrainingPlots(Callback):
    """Log ``plots/score_per_episode.png``, ``plots/score_per_iteration.png`` and, for algorithms
    that imagine, ``plots/real_vs_imagined_frames.png`` to the MLflow run.

    The figures are drawn from the run's own metric history in the store, so a resumed run's
    figures cover its whole life. They are redrawn every ``every_n_frames`` and at the end.

    Args:
        enabled: draw the figures at all.
        every_n_frames: frames between redraws during training (0: only at the end).
    """

    def __init__(self, enabled: bool = True, every_n_frames: int = 0) -> None:
        self.enabled = enabled
        self.every_n_frames = every_n_frames
        self.written: list[str] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Redraw when the frame count crosses a multiple of ``every_n_frames``."""
        frames, batch = pl_module.frames, pl_module.frames_per_batch
        if self.every_n_frames > 0 and frames // self.every_n_frames > (frames - batch) // self.every_n_frames:
            self.draw(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Draw the final figures."""
        self.draw(trainer)

    def draw(self, trainer: Trainer) -> list[str]:
        """Draw every figure that has data and log it; return the artifact paths."""
        logger = trainer.logger
        if not self.enabled or not trainer.is_global_zero or not isinstance(logger, MLFlowLogger):
            return []
        flush_metrics()  # metrics are written by a background thread: read them all
        client = logger.experiment
        written = []
        for name, curves in run_curves(client, logger.run_id).items():
            if not curves:
                continue
            title, xlabel, ylabel = FIGURES[name]
            xlabel = frame_axis_label(xlabel, trainer.lightning_module)
            figure = plots.line_figure(curves, title, xlabel, ylabel, engineering_x=name != "score_per_episode")
            artifact = f"{ARTIFACT_DIR}/{name}.png"
            client.log_figure(logger.run_id, figure, artifact)
            plots.close(figure)
            written.append(artifact)
        self.written = written
        return written
