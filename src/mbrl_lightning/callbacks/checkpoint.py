"""Checkpoints every N env frames and of the best evaluation, written atomically and uploaded to MLflow at once."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

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
    an atomic rename (a crash mid-write keeps the last good file) and is put in the MLflow run's
    artifacts right away, so a killed run's checkpoint is already in the store. Where the artifact
    store is a folder on the same disk (the embedded store), the artifact is a hard link to the
    local file, so each checkpoint is stored once; a remote store gets an upload.

    With ``save_best``, every evaluation whose ``eval/return_mean`` beats all earlier ones also
    writes ``best.ckpt`` (same way). Lightning's ``ModelCheckpoint(monitor=...)`` is not used for
    this: it skips saving while ``global_step`` (optimizer steps) stands still, which a tabular
    learner's never leaves, and it uploads to MLflow only when the run ends.

    Args:
        every_n_frames: env frames between checkpoints (agent steps on Atari; 0: only at the end).
        dirpath: local folder; default ``<default_root_dir>/checkpoints/<mlflow run id>``.
        upload: copy each checkpoint to the MLflow run under ``checkpoints/``.
        save_best: also keep ``best.ckpt``, the state at the best evaluation so far.
        upload_buffer: put the whole frame replay (Atari) in every checkpoint, so a checkpoint
            downloaded from MLflow resumes anywhere. Off: the frames stay once in
            ``<dirpath>/replay_buffer/`` and checkpoints hold only their position, which costs what
            changed since the previous checkpoint; resuming then needs that folder.
    """

    def __init__(
        self, every_n_frames: int = 10_000, dirpath: str | None = None, upload: bool = True, save_best: bool = True,
        upload_buffer: bool = False,
    ) -> None:
        self.every_n_frames = every_n_frames
        self.upload_buffer = upload_buffer
        self.dirpath = dirpath
        self.upload = upload
        self.save_best = save_best
        self.last_path: Path | None = None
        self.best_path: Path | str | None = None
        self.best_return: float | None = None
        self.best_frame: int | None = None
        self.final_return: float | None = None
        self.final_frame: int | None = None
        self._evaluations_seen = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Give buffers that can keep their frames on disk a folder next to the checkpoints (before a resume loads them)."""
        if self.upload_buffer:
            return
        rank = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        for name, buffer in getattr(pl_module, "checkpointed_buffers", dict)().items():
            if hasattr(buffer, "keep_in"):
                buffer.keep_in(self.checkpoint_dir(trainer) / f"{name}_buffer{rank}")
                if buffer.folder is not None and trainer.is_global_zero:
                    print(f"Replay buffer {name!r} kept in {buffer.folder}; checkpoints hold its position only, so a "
                          "resume needs this folder (--checkpoint.upload_buffer true puts it in every checkpoint)",
                          flush=True)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Count evaluations from the module's state; a resumed run's best checkpoint is the one it wrote."""
        self._evaluations_seen = pl_module.evaluations
        if self.best_return is not None and self.best_path is None:
            local = self.checkpoint_dir(trainer) / BEST_CHECKPOINT
            run_id = getattr(trainer.logger, "run_id", None)
            stored = f"runs:/{run_id}/{ARTIFACT_DIR}/{BEST_CHECKPOINT}" if self.upload and run_id else None
            self.best_path = local if local.is_file() or stored is None else stored

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Save ``best.ckpt`` after a new best evaluation and ``last.ckpt`` at multiples of ``every_n_frames``."""
        evaluated = pl_module.evaluations > self._evaluations_seen
        self._evaluations_seen = pl_module.evaluations
        if evaluated:
            self.final_return, self.final_frame = float(trainer.callback_metrics[BEST_METRIC]), pl_module.frames
        if self.save_best and evaluated:
            value = self.final_return
            if self.best_return is None or value > self.best_return:
                self.best_return, self.best_frame = value, pl_module.frames
                self.best_path = self.save(trainer, BEST_CHECKPOINT)
        if self.every_n_frames <= 0:
            return
        frames, batch = pl_module.frames, pl_module.last_batch_frames
        if frames // self.every_n_frames > (frames - batch) // self.every_n_frames:
            self.save(trainer)

    def state_dict(self) -> dict[str, Any]:
        """The best and latest evaluations, so a resumed run only replaces ``best.ckpt`` with a better one."""
        return {"best_return": self.best_return, "best_frame": self.best_frame,
                "final_return": self.final_return, "final_frame": self.final_frame}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best_return = state_dict.get("best_return")
        self.best_frame = state_dict.get("best_frame")
        self.final_return = state_dict.get("final_return", self.best_return)
        self.final_frame = state_dict.get("final_frame", self.best_frame)

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
        """Write ``name`` (default ``last.ckpt``) atomically after the metrics logged so far are committed, then upload it."""
        folder = self.checkpoint_dir(trainer)
        path = folder / name
        partial = folder / (name + ".partial")
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            logger = trainer.logger
            if isinstance(logger, MLFlowLogger):
                from mbrl_lightning.tracking.store import commit_metrics  # tracking imports this module

                # Published only once the metrics it follows are durable (see commit_metrics).
                commit_metrics(logger)
            os.replace(partial, path)
            if self.upload and isinstance(logger, MLFlowLogger) and not _link_artifact(logger, path):
                logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
        if name == LAST_CHECKPOINT:
            self.last_path = path
            # Buffers kept on disk journal overwrites from this position on (the newest last.ckpt's).
            for buffer in getattr(trainer.lightning_module, "checkpointed_buffers", dict)().values():
                if hasattr(buffer, "restore_point_saved"):
                    buffer.restore_point_saved()
        return path


def _link_artifact(logger: MLFlowLogger, path: Path) -> bool:
    """Hard-link ``path`` into the run's local artifact folder (atomically); False where that cannot be done.

    MLflow's ``log_artifact`` copies the file, which doubles every checkpoint on disk when the
    artifact store is local (116 MB per Atari ``last.ckpt``).
    """
    from mbrl_lightning.tracking.resilient import is_unreachable, quick_requests  # tracking imports this module

    try:
        # One quick try: MLflow's default retries would hold training for minutes while a server is away.
        with quick_requests():
            location = urlparse(logger.experiment.get_run(logger.run_id).info.artifact_uri)
    except Exception as error:
        # A tracking server that is away cannot say where its artifacts are: upload, which keeps the call on disk.
        if not is_unreachable(error):
            raise
        return False
    if location.scheme not in ("", "file"):
        return False
    folder = Path(url2pathname(location.path)) / ARTIFACT_DIR
    staged = folder / f".{path.name}.link"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staged.unlink(missing_ok=True)
        os.link(path, staged)
        os.replace(staged, folder / path.name)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        return False
    return True
