"""Logging to a tracking server that may go away: calls are batched, kept on disk while it is away, and sent when it is back."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking.offline import OFFLINE_ROOT, Spool, metric_rows, send, upload_command

# Metrics of one second go in one request: one per training batch would cost a round trip each.
FLUSH_SECONDS = 1.0
# While the server is away, try it again at most this often.
RETRY_SECONDS = 5.0
_LOG = logging.getLogger("mbrl_lightning.tracking")
_CLIENTS: weakref.WeakSet[BufferedClient] = weakref.WeakSet()


@contextlib.contextmanager
def quick_requests(timeout_seconds: int = 10) -> Iterator[None]:
    """One try per request with a short timeout, instead of MLflow's minutes of retries with backoff."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_seconds)}
    saved = {key: os.environ.get(key) for key in quick}
    os.environ.update(quick)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the server did not answer (not that it refused the call)."""
    if isinstance(error, RestException):
        return False
    if isinstance(error, requests.exceptions.HTTPError):
        return error.response is None or error.response.status_code >= 500
    if isinstance(error, requests.exceptions.RequestException):
        return True
    return isinstance(error, MlflowException) and str(error).startswith("API request to")


class BufferedClient(MlflowClient):
    """An MlflowClient for a tracking server that loses no call when the server goes away.

    Metrics are sent in one batch per second. A call the server does not answer is recorded
    in ``mlruns/offline/<run_id>/`` (a :class:`Spool`) with the file it uploads, training goes
    on, and one warning says so; every later call is recorded too until the server answers
    again, when the record is sent in order. MLflow's own asynchronous logging drops a batch
    its server does not take, which is why this client keeps them itself.
    """

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(tracking_uri)
        self.server = tracking_uri
        self.offline = False
        self._warned = False
        self._last_try = 0.0
        self._last_flush = time.monotonic()
        self._metrics: dict[str, list[Metric]] = {}
        self._spools: dict[str, Spool] = {}
        _CLIENTS.add(self)

    # ---------------------------------------------------------------- the calls a run makes
    def log_batch(self, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
                  tags: Sequence[RunTag] = (), synchronous: bool | None = None) -> None:
        """Buffer metrics (sent within a second); params and tags go at once."""
        if params or tags:
            self.flush()
            self._call({"op": "log_batch", "run_id": run_id, "metrics": metric_rows(list(metrics)),
                        "params": [[p.key, p.value] for p in params], "tags": [[t.key, t.value] for t in tags]})
            return
        self._metrics.setdefault(run_id, []).extend(metrics)
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        """Set a tag (after the buffered metrics)."""
        self.flush()
        self._call({"op": "set_tag", "run_id": run_id, "key": key, "value": str(value)})

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Upload a file (after the buffered metrics); kept on disk with the record while the server is away."""
        self.flush()
        self._call({"op": "log_artifact", "run_id": run_id, "local_path": str(local_path), "artifact_path": artifact_path})

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End the run, after everything it logged."""
        self.flush()
        self._call({"op": "set_terminated", "run_id": run_id, "status": status, "end_time": end_time})

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """Change the run's status (a resumed run is RUNNING again)."""
        if name is not None:
            super().update_run(run_id, status, name)
            return
        self.flush()
        self._call({"op": "update_run", "run_id": run_id, "status": status})

    # ---------------------------------------------------------------- sending and keeping
    def flush(self) -> None:
        """Send the buffered metrics (kept on disk instead while the server is away)."""
        self._last_flush = time.monotonic()
        batches, self._metrics = self._metrics, {}
        for run_id, metrics in batches.items():
            for start in range(0, len(metrics), 1000):  # MLflow's limit of metrics per batch
                self._call({"op": "log_batch", "run_id": run_id, "metrics": metric_rows(metrics[start:start + 1000])})

    def _call(self, operation: dict[str, Any]) -> None:
        if self.offline and not self._reconnect():
            self._spool(operation["run_id"]).record(operation)
            return
        try:
            with quick_requests():
                send(self, operation)
        except Exception as error:
            if not is_unreachable(error):
                raise
            self._go_offline(operation["run_id"], error)
            self._spool(operation["run_id"]).record(operation)

    def _spool(self, run_id: str) -> Spool:
        if run_id not in self._spools:
            self._spools[run_id] = Spool((OFFLINE_ROOT / run_id).resolve())
        return self._spools[run_id]

    def _go_offline(self, run_id: str, error: BaseException) -> None:
        self.offline = True
        self._last_try = time.monotonic()
        if self._warned:
            return
        self._warned = True
        folder = self._spool(run_id).folder
        _LOG.warning(
            "tracking server %s does not answer (%s); training goes on with checkpoints on disk, and tracking "
            "calls are kept in %s and sent when it answers again (or by: %s)",
            self.server, type(error.__cause__ or error).__name__, folder, upload_command(folder),
        )

    def _reconnect(self, force: bool = False) -> bool:
        """Send what was kept, if the server answers; True once nothing is left to send."""
        if not force and time.monotonic() - self._last_try < RETRY_SECONDS:
            return False
        self._last_try = time.monotonic()
        try:
            with quick_requests():
                sent = sum(spool.replay(self) for spool in self._spools.values())
        except Exception as error:
            if not is_unreachable(error):
                raise
            return False
        self.offline = False
        self._spools.clear()
        _LOG.info("tracking server %s answers again: %d kept tracking calls sent", self.server, sent)
        return True

    def close(self) -> None:
        """Send everything; if the server is still away, say where the calls are kept and how to send them."""
        self.flush()
        if not self.offline or self._reconnect(force=True):
            return
        for spool in self._spools.values():
            _LOG.warning("%d tracking calls were not sent to %s; send them with: %s",
                         len(spool.read()), self.server, upload_command(spool.folder))


def close_clients() -> None:
    """Flush every buffering client of this process."""
    for client in list(_CLIENTS):
        client.close()


class TrackingServerLogger(MLFlowLogger):
    """Lightning's MLflow logger on a :class:`BufferedClient`, for runs tracked by a server."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mlflow_client = BufferedClient(kwargs["tracking_uri"])

    def finalize(self, status: str = "success") -> None:
        """End the run without first reading it back (a read cannot be kept for later while the server is away)."""
        if not self._initialized:
            return
        status = {"success": "FINISHED", "failed": "FAILED", "finished": "FINISHED"}.get(status, status)
        self.experiment.set_terminated(self.run_id, status)
