"""MLflow tracking: the default store, run loggers and checkpoint lookup."""

from mbrl_lightning.tracking.checkpoints import ResolvedCheckpoint, resolve_checkpoint
from mbrl_lightning.tracking.store import (
    DEFAULT_TRACKING_URI,
    artifact_location,
    check_reachable,
    flush_metrics,
    make_logger,
    tracking_uri,
    ui_command,
)

__all__ = ["DEFAULT_TRACKING_URI", "artifact_location", "ResolvedCheckpoint", "check_reachable", "flush_metrics", "make_logger", "resolve_checkpoint", "tracking_uri", "ui_command"]
