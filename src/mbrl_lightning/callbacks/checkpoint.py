"""Checkpoints every N env frames, written atomically and uploaded to the MLflow run at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger

LAST_CHECKPOINT = "last.ckpt"
ARTIFACT_DIR = "checkpoints"


class FrameCheckpoint(Callback):
    """Save ``last.ckpt`` every ``every_n_frames`` real frames and at the end of training.

    Lightning's own schedule counts optimizer steps, which drift with the number of optimizers
    and updates per batch; env frames do not. Each checkpoint replaces the previous one through
    an atomic rename (a crash mid-write keeps the last good file) and is copied to the MLflow
    run's artifacts right away, so a killed run's checkpoint is already in the store.

    Args:
        every_n_frames: frames between checkpoints (0: only at the end).
        dirpath: local folder; default ``<default_root_dir>/checkpoints/<mlflow run id>``.
        upload: copy each checkpoint to the MLflow run under ``checkpoints/``.
    """

    def __init__(self, every_n_frames: int = 10_000, dirpath: str | None = None, upload: bool = True) -> None:
        self.every_n_frames = every_n_frames
        self.dirpath = dirpath
        self.upload = upload
        self.last_path: Path | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Save when the frame count crosses a multiple of ``every_n_frames``."""
        if self.every_n_frames <= 0:
            return
        frames, batch = pl_module.frames, pl_module.last_batch_frames
        if frames // self.every_n_frames > (frames - batch) // self.every_n_frames:
            self.save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Always leave a checkpoint of the final state."""
        self.save(trainer)

    def checkpoint_dir(self, trainer: Trainer) -> Path:
        """Where this run's checkpoints are written."""
        if self.dirpath is not None:
            return Path(self.dirpath)
        run_id = getattr(trainer.logger, "run_id", None) or "no_logger"
        return Path(trainer.default_root_dir) / "checkpoints" / run_id

    def save(self, trainer: Trainer) -> Path:
        """Write ``last.ckpt`` atomically, then upload it."""
        folder = self.checkpoint_dir(trainer)
        path = folder / LAST_CHECKPOINT
        partial = folder / (LAST_CHECKPOINT + ".partial")
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, path)
            logger = trainer.logger
            if self.upload and isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
        self.last_path = path
        return path
