"""Videos of evaluation episodes, written as MP4 or GIF artifacts of the MLflow run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger

from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.evaluation import record_episode
from mbrl_lightning.video import write_video

ARTIFACT_DIR = "videos"


class EvalVideo(Callback):
    """Render evaluation episodes every ``every_n_frames`` frames and log them to the MLflow run.

    A video is taken right after an evaluation, on the env seed of that evaluation's first
    episode: it shows exactly the episode whose return was just logged (the policy is
    deterministic). Rendering uses ``render_mode="rgb_array"``, which needs no display, so it works
    headless for classic control, pybullet and Atari. Artifacts are named
    ``videos/eval_<frames>.<format>``; a final video is taken when training ends.

    Args:
        every_n_frames: frames between two videos (0: no videos).
        episodes: evaluation episodes per video, played one after the other.
        format: ``mp4`` (every frame, small files) or ``gif`` (plays anywhere).
        fps: frames per second of the video.
    """

    def __init__(self, every_n_frames: int = 0, episodes: int = 1, format: Literal["mp4", "gif"] = "mp4", fps: int = 30) -> None:
        if every_n_frames < 0:
            raise ConfigurationError(f"video.every_n_frames={every_n_frames}: must be 0 (no videos) or more.")
        if episodes < 1:
            raise ConfigurationError(f"video.episodes={episodes}: must be a positive integer.")
        if format not in ("mp4", "gif"):
            raise ConfigurationError(f"video.format={format!r}: allowed values: 'mp4', 'gif'.")
        self.every_n_frames = every_n_frames
        self.episodes = episodes
        self.format = format
        self.fps = fps
        self.written: list[str] = []
        self._evaluations_seen = 0
        self._slot = 0
        self._recorded_at: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start counting from the module's state (a resumed run has frames and evaluations behind it)."""
        self._evaluations_seen = pl_module.evaluations
        self._slot = pl_module.frames // self.every_n_frames if self.every_n_frames > 0 else 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Record after the first evaluation at or past each multiple of ``every_n_frames``."""
        evaluated = pl_module.evaluations > self._evaluations_seen
        self._evaluations_seen = pl_module.evaluations
        if self.every_n_frames > 0 and evaluated and pl_module.frames // self.every_n_frames > self._slot:
            self._slot = pl_module.frames // self.every_n_frames
            self.record(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A last video of the final policy."""
        if self.every_n_frames > 0 and self._recorded_at != pl_module.frames:
            self.record(trainer, pl_module)

    def record(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Play and write the episodes; upload the file to the MLflow run; return its artifact path."""
        self._recorded_at = pl_module.frames
        evaluation = max(pl_module.evaluations - 1, 0)
        frames = []
        for episode in range(self.episodes):
            # Copy ``episode`` of the evaluation env was seeded ``eval_seed + episode``.
            seed = pl_module.eval_seed(evaluation) + episode
            frames += record_episode(pl_module.env, pl_module.eval_policy, seed, pl_module.eval_max_steps).frames
        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, MLFlowLogger):
            return None
        with tempfile.TemporaryDirectory() as folder:
            path = write_video(frames, Path(folder) / f"eval_{pl_module.frames:09d}.{self.format}", self.fps)
            logger.experiment.log_artifact(logger.run_id, str(path), ARTIFACT_DIR)
        self.written.append(f"{ARTIFACT_DIR}/{path.name}")
        return self.written[-1]
