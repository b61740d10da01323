"""A figure of world-model error against prediction horizon, logged to the MLflow run."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless: figures are written, never shown
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.loggers import MLFlowLogger  # noqa: E402

ARTIFACT_FILE = "world_model/k_step_error.png"


class KStepErrorPlot(Callback):
    """Record the module's k-step error curve every ``every_n_frames`` and plot them all at the end.

    Model bias compounds with the horizon; curves taken as training goes on show the model
    getting better and the growth with k. Works with any module exposing ``k_step_curve``.

    Args:
        every_n_frames: frames between two recorded curves.
    """

    def __init__(self, every_n_frames: int = 10_000) -> None:
        self.every_n_frames = every_n_frames
        self.curves: list[tuple[int, list[float]]] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: object) -> None:
        """Keep the current curve when the frame count crosses a multiple of ``every_n_frames``."""
        frames, batch = pl_module.frames, pl_module.last_batch_frames
        curve = getattr(pl_module, "k_step_curve", None)
        if curve is not None and frames // self.every_n_frames > (frames - batch) // self.every_n_frames:
            self.curves.append((frames, curve.tolist()))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Add the final curve, draw the figure and log it to the MLflow run."""
        curve = getattr(pl_module, "k_step_curve", None)
        if curve is not None and (not self.curves or self.curves[-1][0] != pl_module.frames):
            self.curves.append((pl_module.frames, curve.tolist()))
        logger = trainer.logger
        if not self.curves or not trainer.is_global_zero or not isinstance(logger, MLFlowLogger):
            return
        figure = self.figure()
        logger.experiment.log_figure(logger.run_id, figure, ARTIFACT_FILE)
        plt.close(figure)

    def figure(self) -> plt.Figure:
        """Error against horizon, one line per recorded frame count."""
        figure, axes = plt.subplots(figsize=(6, 4))
        colours = plt.cm.viridis([i / max(len(self.curves) - 1, 1) for i in range(len(self.curves))])
        for (frames, errors), colour in zip(self.curves, colours):
            points = [(k, e) for k, e in enumerate(errors, start=1) if not math.isnan(e) and e > 0]
            if points:
                axes.plot(*zip(*points), marker="o", color=colour, label=f"{frames:,} frames")
        axes.set_yscale("log")
        axes.set_xlabel("prediction horizon k (steps)")
        axes.set_ylabel("mean squared error (normalised units)")
        axes.set_title("World-model k-step error")
        axes.grid(True, which="both", alpha=0.3)
        if axes.lines:  # curves of all-NaN errors (too few held-out steps yet) draw nothing
            axes.legend(fontsize="small")
        figure.tight_layout()
        return figure
