"""What a study found: one record per trial, a table, and the trials' curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna

from mbrl_lightning import plots

# colour, line style, width per trial state
_LOOK = {"COMPLETE": ("C0", "-", 1.2), "PRUNED": ("0.6", "--", 1.0), "FAIL": ("C3", ":", 1.0),
         "RUNNING": ("C2", "-.", 1.0), "best": ("C1", "-", 2.6)}


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
    """Every trial's reported ``metric`` over env frames, coloured by state (pruned dashed), the best one bold.

    One legend entry per state rather than per trial: a study has tens of trials.
    """
    figure, axes = plots.plt.subplots(figsize=(7, 4.2), dpi=100)
    labelled: set[str] = set()
    for record in sorted(records, key=lambda r: r["trial"] == best):
        if not record["curve"]:
            continue
        points = np.array(record["curve"], dtype=float)
        state = "best" if record["trial"] == best else record["state"]
        colour, style, width = _LOOK.get(state, _LOOK["COMPLETE"])
        label = None if state in labelled else (f"best (trial {best})" if state == "best" else state.lower())
        labelled.add(state)
        axes.plot(points[:, 0], points[:, 1], style, color=colour, linewidth=width, label=label, marker="o", markersize=3)
    axes.xaxis.set_major_formatter(plots.EngFormatter(sep=""))
    axes.set_title(f"Trials of study {records[0]['study'] if records else ''} ({len(records)})")
    axes.set_xlabel("real environment frames")
    axes.set_ylabel(f"{metric} (reported to the pruner)")
    axes.grid(True, alpha=0.3)
    if labelled:
        axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plots.close(figure)
    return path
