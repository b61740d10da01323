"""Checkpoints every N env frames and of the best evaluation, written atomically and uploaded to MLflow at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger

LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
BEST_METRIC = "eval/return_mean"
ARTIFACT_DIR = "checkpoints"


class FrameCheckpoint(Callback):
    """Save ``last.ckpt`` every ``every_n_frames`` real frames and at the end of training.

    Lightning's own schedule counts optimizer steps, which drift with the number of optimizers
    and updates per batch; env frames do not. Each checkpoint replaces the previous one through
    an atomic rename (a crash mid-write keeps the last good file) and is copied to the MLflow
    run's artifacts right away, so a killed run's checkpoint is already in the store.

    With ``save_best``, every evaluation whose ``eval/return_mean`` beats all earlier ones also
    writes ``best.ckpt`` (same way). Lightning's ``ModelCheckpoint(monitor=...)`` is not used for
    this: it skips saving while ``global_step`` (optimizer steps) stands still, which a tabular
    learner's never leaves, and it uploads to MLflow only when the run ends.

    Args:
        every_n_frames: frames between checkpoints (0: only at the end).
        dirpath: local folder; default ``<default_root_dir>/checkpoints/<mlflow run id>``.
        upload: copy each checkpoint to the MLflow run under ``checkpoints/``.
        save_best: also keep ``best.ckpt``, the state at the best evaluation so far.
    """

    def __init__(
        self, every_n_frames: int = 10_000, dirpath: str | None = None, upload: bool = True, save_best: bool = True
    ) -> None:
        self.every_n_frames = every_n_frames
        self.dirpath = dirpath
        self.upload = upload
        self.save_best = save_best
        self.last_path: Path | None = None
        self.best_path: Path | None = None
        self.best_return: float | None = None
        self.best_frame: int | None = None
        self._evaluations_seen = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Count evaluations from the module's state (a resumed run has some behind it)."""
        self._evaluations_seen = pl_module.evaluations

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Save ``best.ckpt`` after a new best evaluation and ``last.ckpt`` at multiples of ``every_n_frames``."""
        evaluated = pl_module.evaluations > self._evaluations_seen
        self._evaluations_seen = pl_module.evaluations
        if self.save_best and evaluated:
            value = float(trainer.callback_metrics[BEST_METRIC])
            if self.best_return is None or value > self.best_return:
                self.best_return, self.best_frame = value, pl_module.frames
                self.best_path = self.save(trainer, BEST_CHECKPOINT)
        if self.every_n_frames <= 0:
            return
        frames, batch = pl_module.frames, pl_module.last_batch_frames
        if frames // self.every_n_frames > (frames - batch) // self.every_n_frames:
            self.save(trainer)

    def state_dict(self) -> dict[str, Any]:
        """The best evaluation so far, so a resumed run only replaces ``best.ckpt`` with a better one."""
        return {"best_return": self.best_return, "best_frame": self.best_frame}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best_return = state_dict.get("best_return")
        self.best_frame = state_dict.get("best_frame")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Always leave a checkpoint of the final state."""
        self.save(trainer)

    def checkpoint_dir(self, trainer: Trainer) -> Path:
        """Where this run's checkpoints are written."""
        if self.dirpath is not None:
            return Path(self.dirpath)
        run_id = getattr(trainer.logger, "run_id", None) or "no_logger"
        return Path(trainer.default_root_dir) / "checkpoints" / run_id

    def save(self, trainer: Trainer, name: str = LAST_CHECKPOINT) -> Path:
        """Write ``name`` (default ``last.ckpt``) atomically, then upload it."""
        folder = self.checkpoint_dir(trainer)
        path = folder / name
        partial = folder / (name + ".partial")
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, path)
            logger = trainer.logger
            if self.upload and isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
        if name == LAST_CHECKPOINT:
            self.last_path = path
        return path
