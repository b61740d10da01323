"""What a study found: one record per trial, a table, and the trials' curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna

from mbrl_lightning import plots

_STYLE = {"COMPLETE": "-", "PRUNED": "--", "FAIL": ":", "RUNNING": "-."}


def trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """One JSON-ready record per trial: number, state, value, searched values, MLflow run and curve."""
    records = []
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        records.append({
            "study": study.study_name,
            "trial": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "overrides": trial.user_attrs.get("overrides", trial.params),
            "last_frame": steps[-1] if steps else None,
            "curve": [[step, trial.intermediate_values[step]] for step in steps],
            "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
            "failure": trial.user_attrs.get("failure"),
        })
    return records


def trial_table(records: list[dict[str, Any]], metric: str) -> str:
    """A Markdown table of the trials, best value first among the complete ones."""
    lines = [f"| trial | state | {metric} | last frame | values | MLflow run |", "| --- | --- | --- | --- | --- | --- |"]
    for record in records:
        value = "" if record["value"] is None else f"{record['value']:.4g}"
        values = ", ".join(f"{key}={_short(v)}" for key, v in record["overrides"].items())
        frame = "" if record["last_frame"] is None else f"{record['last_frame']:,}"
        lines.append(f"| {record['trial']} | {record['state']} | {value} | {frame} | {values} | {record['mlflow_run_id'] or ''} |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_curves(records: list[dict[str, Any]], metric: str, path: Path, best: int | None) -> Path:
    """The figure of every trial's reported ``metric`` over env frames (pruned dashed, failed dotted)."""
    curves = []
    for record in records:
        if not record["curve"]:
            continue
        points = np.array(record["curve"], dtype=float)
        label = f"trial {record['trial']} ({record['state'].lower()}{', best' if record['trial'] == best else ''})"
        curves.append(plots.Curve(label, points[:, 0], points[:, 1], style=_STYLE.get(record["state"], "-")))
    figure = plots.line_figure(curves, f"Trials of study {records[0]['study'] if records else ''}",
                               "real environment frames", metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plots.close(figure)
    return path
