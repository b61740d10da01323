"""Tracking calls kept on disk while the server is away, and sent again: ``python -m mbrl_lightning.tracking.offline FOLDER``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

OPERATIONS = "operations.jsonl"
OFFLINE_ROOT = Path("mlruns") / "offline"


def upload_command(folder: Path) -> str:
    """The command that sends a spool folder's calls to the tracking server."""
    return f"python -m mbrl_lightning.tracking.offline {folder}"


class Spool:
    """An append-only record of one run's tracking calls, with the files its uploads need.

    A file to upload is hard-linked (copied across file systems) into the spool when the call
    is recorded: a checkpoint replaced later, or a config written to a temporary folder, is still
    the version the call meant.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def path(self) -> Path:
        """The JSON-lines file of recorded calls."""
        return self.folder / OPERATIONS

    def record(self, operation: dict[str, Any]) -> None:
        """Append one call (files of ``log_artifact`` are kept beside it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if operation["op"] == "log_artifact":
            kept = self.folder / "files" / f"{len(self.read())}-{Path(operation['local_path']).name}"
            kept.parent.mkdir(exist_ok=True)
            try:
                os.link(operation["local_path"], kept)
            except OSError:
                shutil.copy2(operation["local_path"], kept)
            operation = {**operation, "local_path": str(kept.resolve())}
        with self.path.open("a") as file:
            file.write(json.dumps(operation) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """The recorded calls, oldest first."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def replay(self, client: MlflowClient) -> int:
        """Send every recorded call in order; the folder is removed once all are sent. Returns how many were sent.

        A call that fails leaves it and the later ones recorded (the error propagates), so a
        later replay continues where this one stopped.
        """
        operations = self.read()
        for index, operation in enumerate(operations):
            try:
                send(client, operation)
            except Exception:
                self.path.write_text("".join(json.dumps(op) + "\n" for op in operations[index:]))
                raise
        shutil.rmtree(self.folder, ignore_errors=True)
        return len(operations)


def metric_rows(metrics: list[Metric]) -> list[list[Any]]:
    """Metrics as JSON rows ``[key, value, timestamp, step]``."""
    return [[m.key, m.value, m.timestamp, m.step] for m in metrics]


def send(client: MlflowClient, operation: dict[str, Any]) -> None:
    """Make one recorded call with ``client`` (a plain MlflowClient, not the buffering one)."""
    run_id, op = operation["run_id"], operation["op"]
    if op == "log_batch":
        metrics = [Metric(*row) for row in operation.get("metrics", [])]
        params = [Param(k, v) for k, v in operation.get("params", [])]
        tags = [RunTag(k, v) for k, v in operation.get("tags", [])]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow's limit of metrics per batch
            MlflowClient.log_batch(client, run_id, metrics[start:start + 1000], params if start == 0 else [],
                                   tags if start == 0 else [])
    elif op == "set_tag":
        MlflowClient.set_tag(client, run_id, operation["key"], operation["value"])
    elif op == "log_artifact":
        MlflowClient.log_artifact(client, run_id, operation["local_path"], operation.get("artifact_path"))
    elif op == "set_terminated":
        MlflowClient.set_terminated(client, run_id, operation.get("status"), operation.get("end_time"))
    elif op == "update_run":
        MlflowClient.update_run(client, run_id, operation.get("status"))
    else:
        raise ValueError(f"{op}: not a recorded tracking call")


def main(argv: list[str] | None = None) -> int:
    """Send the calls recorded in the given spool folders to ``MLFLOW_TRACKING_URI``."""
    from mbrl_lightning.tracking.store import tracking_uri

    folders = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not folders:
        folders = sorted(p for p in OFFLINE_ROOT.glob("*") if (p / OPERATIONS).is_file())
    client = MlflowClient(tracking_uri())
    for folder in folders:
        if not (folder / OPERATIONS).is_file():
            print(f"error: {folder}: no {OPERATIONS} here", file=sys.stderr)
            return 2
        sent = Spool(folder).replay(client)
        print(f"{folder}: {sent} tracking calls sent to {tracking_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
