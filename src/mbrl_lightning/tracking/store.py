"""Where runs are stored, and the MLflow logger of a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from filelock import FileLock
from mlflow.tracking import MlflowClient

from mbrl_lightning.errors import ConfigurationError

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger

# The loggers (resilient.py) import Lightning and torch; they are imported where a run is made, so
# that reading the store (compare.py, a sweep's launcher) starts without them.

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = Path("mlruns") / "artifacts"
# Embedded stores whose schema this process has created or found complete.
_READY_STORES: set[Path] = set()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team server), else the embedded SQLite store.

    The embedded store's path is made absolute: MLflow caches stores by URI, and a relative
    SQLite URI would keep pointing at the folder where it was first opened. Its schema exists
    once this returns (see :func:`_create_embedded_store`).
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    database = Path(DEFAULT_TRACKING_URI.removeprefix("sqlite:///")).resolve()
    _create_embedded_store(database)
    return f"sqlite:///{database}"


def _create_embedded_store(database: Path) -> None:
    """Create (or migrate) the SQLite store's schema under a file lock, once per process.

    Runs started together in a fresh folder (seeds in parallel) would otherwise all create the
    tables at once, and all but one fail with "table already exists".
    """
    if database in _READY_STORES:
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(database.parent / ".create.lock"):
        MlflowClient(f"sqlite:///{database}")  # the store creates its tables on first open
    _READY_STORES.add(database)


def ui_command() -> str:
    """The command that opens this store in the MLflow UI."""
    return f"mlflow ui --backend-store-uri {tracking_uri()}"


def uses_embedded_store() -> bool:
    """Whether runs go to the embedded store under ``mlruns/`` (no ``MLFLOW_TRACKING_URI`` of the user's).

    ``mlflow.set_tracking_uri`` exports the URI it is given as ``MLFLOW_TRACKING_URI``, so after
    :func:`make_logger` the variable holds the embedded store's own URI: that is still no server.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return not uri or uri.removeprefix("sqlite:///") in map(str, _READY_STORES)


def artifact_location(experiment_name: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside the embedded store's database, or the server's default."""
    if not uses_embedded_store():
        return None
    return (DEFAULT_ARTIFACT_ROOT / experiment_name).resolve().as_uri()


def make_logger(
    experiment_name: str,
    run_name: str | None = None,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> MLFlowLogger:
    """An MLflow logger for a new run, or for the existing ``run_id`` when resuming.

    On a tracking server the logger loses nothing while the server is away (see
    :class:`TrackingServerLogger`); the embedded store is a local file that cannot go away.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    from mbrl_lightning.tracking.resilient import TrackingServerLogger

    uri = tracking_uri()
    # The process-wide URI makes mlflow.flush_async_logging() reach this logger's store.
    mlflow.set_tracking_uri(uri)
    embedded = uses_embedded_store()
    if embedded:
        # Unbuffered, MLflow's queue thread waits up to a second on its queue before it sees a
        # flush: every checkpoint and every run's end would lose that second. Buffering a second
        # (the user's own setting wins), it wakes at a flush at once and writes a second's metrics per commit.
        os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")
    return (MLFlowLogger if embedded else TrackingServerLogger)(
        experiment_name=experiment_name,
        run_name=run_name,
        run_id=run_id,
        tracking_uri=uri,
        tags=tags,
        artifact_location=artifact_location(experiment_name),
        log_model=False,
        # Metrics are queued and written by MLflow's background thread: a SQLite commit per batch
        # would otherwise cost more than a small network's update.
        synchronous=False if embedded else None,
    )


def check_reachable() -> None:
    """Fail fast, in one line, when a configured tracking server does not answer."""
    if uses_embedded_store():
        return
    from mbrl_lightning.tracking.resilient import quick_requests

    uri = tracking_uri()
    try:
        with quick_requests():
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as error:  # connection, HTTP and authentication errors all mean: not usable
        raise ConfigurationError(
            f"MLFLOW_TRACKING_URI={uri}: the tracking server does not answer ({type(error).__name__}); "
            "start it, fix the address, or unset MLFLOW_TRACKING_URI to use the embedded store."
        ) from None


def commit_metrics(logger: MLFlowLogger) -> None:
    """Make every metric ``logger`` has taken durable: written to its store, or to the on-disk spool while a server is away.

    A checkpoint is published only after this: a run killed later resumes from that checkpoint
    and logs again only the steps after it, so any metric before it that was still queued in
    memory would be lost for good.
    """
    from mbrl_lightning.tracking.resilient import BufferedClient

    client = logger.experiment
    if isinstance(client, BufferedClient):
        client.flush()
    mlflow.flush_async_logging()  # the embedded store's queue (make_logger set the process-wide URI)


def flush_metrics() -> None:
    """Wait until every queued metric is written, so readers see the whole run."""
    from mbrl_lightning.tracking.resilient import close_clients

    mlflow.flush_async_logging()
    close_clients()
