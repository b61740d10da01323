"""Find the checkpoint a resume asks for: a file, ``last``, or an MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow.tracking import MlflowClient

from mbrl_lightning.callbacks.checkpoint import ARTIFACT_DIR, LAST_CHECKPOINT
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking.store import tracking_uri


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A local checkpoint file, the MLflow run it belongs to, and what trained it."""

    path: Path
    run_id: str | None
    algorithm: str | None = None
    env_id: str | None = None
    frames: int | None = None
    # (threshold, reached return) when a StopAtReturn callback ended the run at its target.
    reached_target: tuple[float, float] | None = None

    def check_matches(self, algorithm: str, env_id: str) -> None:
        """Refuse to resume a checkpoint of another algorithm or environment."""
        if (self.algorithm, self.env_id) != (algorithm, env_id):
            raise ConfigurationError(
                f"--ckpt_path {self.path}: the checkpoint is from {self.algorithm} on {self.env_id}, "
                f"but the config builds {algorithm} on {env_id}; pass the config the run was trained with."
            )


def read_checkpoint(path: Path, run_id: str | None = None) -> ResolvedCheckpoint:
    """Read a checkpoint's run id and origin; a file that is no mbrl-lightning checkpoint is an error.

    Loading uses ``weights_only=True``: a checkpoint can hold tensors and plain data, never code.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        extras = checkpoint["mbrl"]
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ConfigurationError(
            f"--ckpt_path {path}: not a readable mbrl-lightning checkpoint ({type(error).__name__}); "
            "use another checkpoint or runs:/<run_id>."
        ) from None
    stop = (checkpoint.get("callbacks") or {}).get("StopAtReturn") or {}
    reached = (stop["threshold"], stop["reached_return"]) if stop.get("reached_return") is not None else None
    return ResolvedCheckpoint(
        path, extras.get("mlflow_run_id") or run_id, extras.get("algorithm"), extras.get("env_id"), extras.get("frames"),
        reached,
    )


def _download_last(run_id: str, download_dir: Path, filename: str = LAST_CHECKPOINT) -> Path:
    download_dir.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run_id}/{ARTIFACT_DIR}/{filename}",
        dst_path=str(download_dir),
        tracking_uri=tracking_uri(),
    )
    return Path(local)


def _latest_run_with_checkpoint(experiment_name: str, checkpoint_root: Path) -> str:
    client = MlflowClient(tracking_uri=tracking_uri())
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50)
        for run in runs:
            run_id = run.info.run_id
            if (checkpoint_root / run_id / LAST_CHECKPOINT).is_file():
                return run_id
            if any(a.path.endswith(LAST_CHECKPOINT) for a in client.list_artifacts(run_id, ARTIFACT_DIR)):
                return run_id
    raise ConfigurationError(
        f"--ckpt_path last: no checkpoint found for experiment_name={experiment_name!r} in {tracking_uri()}."
    )


def resolve_checkpoint(
    ckpt_path: str, experiment_name: str, checkpoint_root: Path, filename: str = LAST_CHECKPOINT
) -> ResolvedCheckpoint:
    """Turn ``PATH``, ``last`` or ``runs:/<run_id>`` into a local checkpoint file; fail loudly if absent.

    For a run, ``filename`` picks which of its checkpoints (``last.ckpt`` or ``best.ckpt``).
    """
    if ckpt_path == "last" or ckpt_path.startswith("runs:/"):
        run_id = (
            _latest_run_with_checkpoint(experiment_name, checkpoint_root)
            if ckpt_path == "last"
            else ckpt_path.removeprefix("runs:/").strip("/").split("/")[0]
        )
        local = checkpoint_root / run_id / filename
        if not local.is_file():
            try:
                local = _download_last(run_id, checkpoint_root / run_id / "downloaded", filename)
            except Exception as error:  # MLflow raises several types for a missing run or artifact
                raise ConfigurationError(
                    f"--ckpt_path {ckpt_path}: run {run_id} has no {ARTIFACT_DIR}/{filename} in "
                    f"{tracking_uri()} ({type(error).__name__})."
                ) from None
        return read_checkpoint(local, run_id)
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigurationError(f"--ckpt_path {ckpt_path}: no such checkpoint file.")
    return read_checkpoint(path)
