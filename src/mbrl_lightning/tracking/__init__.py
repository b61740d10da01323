"""MLflow tracking: the default store, run loggers and checkpoint lookup."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name is imported from its module when first used: the checkpoint lookup needs torch and
# Lightning, which commands that only read the store (compare.py, a sweep's launcher) never load.
_MODULES = {
    "ResolvedCheckpoint": "checkpoints", "resolve_checkpoint": "checkpoints", "DEFAULT_TRACKING_URI": "store",
    "artifact_location": "store", "check_reachable": "store", "flush_metrics": "store", "make_logger": "store",
    "tracking_uri": "store", "ui_command": "store",
}
__all__ = ["DEFAULT_TRACKING_URI", "artifact_location", "ResolvedCheckpoint", "check_reachable", "flush_metrics",
           "make_logger", "resolve_checkpoint", "tracking_uri", "ui_command"]


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
