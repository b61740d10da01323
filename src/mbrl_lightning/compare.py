"""Compare MLflow runs: pick them by experiment and tags, group, aggregate over seeds, tabulate and plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mbrl_lightning import plots
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.stats import bootstrap_interval, iqm
from mbrl_lightning.tracking import artifact_location
from mbrl_lightning.tracking.history import joined, metric_history


@dataclass
class Group:
    """Runs that share a group key (e.g. one algorithm), one per seed."""

    name: str
    runs: list[Run] = field(default_factory=list)


def select_runs(
    client: MlflowClient, experiments: list[str], tags: dict[str, str] | None = None, finished_only: bool = True
) -> list[Run]:
    """Runs of the named experiments whose tags match ``tags`` (e.g. ``{"env_id": "CartPole-v1"}``)."""
    ids = []
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise ConfigurationError(f"--experiments {name}: no such experiment in the tracking store.")
        ids.append(experiment.experiment_id)
    clauses = [f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items()]
    if finished_only:
        clauses.append("attributes.status = 'FINISHED'")
    return client.search_runs(ids, filter_string=" and ".join(clauses), max_results=10_000)


def group_key(run: Run, key: str, experiment_names: dict[str, str]) -> str:
    """The value of ``key`` for a run: a tag name, ``param:<name>``, ``experiment`` or ``run_name``."""
    if key == "experiment":
        return experiment_names[run.info.experiment_id]
    if key == "run_name":
        return run.info.run_name
    if key.startswith("param:"):
        return run.data.params.get(key.removeprefix("param:"), "?")
    return run.data.tags.get(key, "?")


def group_runs(client: MlflowClient, runs: list[Run], keys: list[str]) -> list[Group]:
    """Runs grouped by the values of ``keys``, in order of first appearance."""
    names = {run.info.experiment_id: client.get_experiment(run.info.experiment_id).name for run in runs}
    groups: dict[str, Group] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        name = " / ".join(group_key(run, key, names) for key in keys)
        groups.setdefault(name, Group(name)).runs.append(run)
    return list(groups.values())


def seed_of(run: Run) -> str:
    """The run's ``seed`` tag (``?`` when it has none)."""
    return run.data.tags.get("seed", "?")


def one_run_per_seed(groups: list[Group], latest_per_seed: bool = False) -> list[Group]:
    """Groups whose runs are distinct seeds: a repeated seed is an error, or with ``latest_per_seed`` the newest run of it.

    A mean and interval over seeds assume independent seeds; two runs of one seed (a rerun, a
    longer run) would be counted as two.
    """
    checked = []
    for group in groups:
        by_seed: dict[str, list[Run]] = {}
        for run in group.runs:  # oldest first
            by_seed.setdefault(seed_of(run), []).append(run)
        repeated = {seed: runs for seed, runs in by_seed.items() if len(runs) > 1}
        if repeated and not latest_per_seed:
            seed, runs = next(iter(repeated.items()))
            ids = ", ".join(run.info.run_id for run in runs)
            raise ConfigurationError(
                f"group {group.name}: {len(runs)} runs of seed {seed} ({ids}); a seed counts once. Narrow the "
                "selection (--tags, --experiments) or pass --latest-per-seed to use the newest run of each seed."
            )
        checked.append(Group(group.name, [runs[-1] for runs in by_seed.values()]))
    return checked


def run_ends(client: MlflowClient, groups: list[Group], metric: str) -> dict[str, int]:
    """Run id -> the env frame of its last ``metric`` point (runs without it are left out)."""
    ends = {}
    for group in groups:
        for run in group.runs:
            history = metric_history(client, run.info.run_id, metric)
            if len(history):
                ends[run.info.run_id] = int(history[-1, 0])
    return ends


def common_budget(ends: dict[str, int], budget: int | None) -> tuple[int | None, str | None]:
    """The frame count to compare at, and a warning when runs end at different counts.

    Runs of unequal length compare at the shortest one's end unless ``budget`` is given; a
    given budget past some runs' ends is kept, with those runs named.
    """
    if not ends:
        return budget, None
    shortest, longest = min(ends.values()), max(ends.values())
    if budget is None:
        if shortest == longest:
            return None, None
        return shortest, (f"runs end at different frame counts ({shortest:,} to {longest:,}); comparing at "
                          f"{shortest:,} frames, where the shortest ends (--budget FRAMES to choose another)")
    short = [run_id for run_id, end in ends.items() if end < budget]
    if not short:
        return budget, None
    return budget, (f"{len(short)} run(s) end before --budget {budget:,} ({', '.join(short)}, at "
                    f"{', '.join(f'{ends[r]:,}' for r in short)} frames): their values are those of their ends")


def history_until(client: MlflowClient, run_id: str, key: str, budget: int | None = None) -> np.ndarray:
    """:func:`metric_history` of ``key``, ending at the first point logged at or past ``budget`` frames.

    Points are logged on the collected batch that crosses a frame count, so the point that
    crosses the budget is the run's value at it (as the benchmarks read budgets).
    """
    history = metric_history(client, run_id, key)
    if budget is None or not len(history):
        return history
    return history[: int(np.searchsorted(history[:, 0], budget, side="left")) + 1]


def final_values(client: MlflowClient, group: Group, metric: str, budget: int | None = None) -> np.ndarray:
    """The last logged value of ``metric`` of each run, up to ``budget`` frames (runs without it are left out)."""
    values = [history_until(client, run.info.run_id, metric, budget) for run in group.runs]
    return np.array([history[-1, 1] for history in values if len(history)])


def frames_to_threshold(
    client: MlflowClient, group: Group, metric: str, threshold: float, budget: int | None = None
) -> list[float | None]:
    """First env frame at which each run's ``metric`` reached ``threshold`` (None: never, within ``budget``)."""
    reached = []
    for run in group.runs:
        history = history_until(client, run.info.run_id, metric, budget)
        hits = history[history[:, 1] >= threshold, 0] if len(history) else []
        reached.append(float(hits[0]) if len(hits) else None)
    return reached


def aggregate_curve(histories: list[np.ndarray], points: int = 100,
                    hold_last: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% bootstrap interval over runs of curves sampled on a common x grid.

    Each run is read as a step function (its latest value holds until the next one). A run that
    ended early keeps its last value up to the grid's end, the longest run (right for runs that
    stop once solved); with ``hold_last`` False it leaves the mean there, which then averages the
    runs that went that far (right for runs stopped before their budget).
    """
    histories = [h for h in histories if len(h)]
    end = max(h[-1, 0] for h in histories)
    start = min(h[0, 0] for h in histories)
    grid = np.linspace(start, end, points)
    sampled = []
    for history in histories:
        # Before a run's first point: its first value.
        values = history[np.clip(np.searchsorted(history[:, 0], grid, side="right") - 1, 0, None), 1]
        if not hold_last:
            # 1% slack: batch granularity ends runs of one budget a few frames apart.
            values = np.where(grid > 1.01 * history[-1, 0], np.nan, values)
        sampled.append(values)
    stacked = np.array(sampled)
    if hold_last:
        low, high = bootstrap_interval(stacked)
        return grid, stacked.mean(axis=0), low, high
    low, high = bootstrap_interval(stacked, omit_missing=True)
    alone = (~np.isnan(stacked)).sum(axis=0) < 2
    low[alone] = high[alone] = np.nan  # one run left: no band, rather than a band of width zero
    return grid, np.nanmean(stacked, axis=0), low, high


def _format(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 1e5 else f"{value:,.0f}"


def markdown_table(
    client: MlflowClient, groups: list[Group], metric: str, threshold: float | None = None, budget: int | None = None
) -> str:
    """One row per group: seeds, mean of the final ``metric`` (at ``budget`` frames when given), its
    95% bootstrap interval, IQM, and with ``threshold`` the frames each seed needed to reach it and their median."""
    final = "final" if budget is None else f"{budget:,}-frame"
    header = ["group", "seeds", f"{final} {metric} mean", "95% CI", "IQM"]
    if threshold is not None:
        header += [f"frames to {metric} >= {threshold:g} (per seed)", "median frames"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for group in groups:
        finals = final_values(client, group, metric, budget)
        if not len(finals):
            continue
        low, high = bootstrap_interval(finals)
        row = [group.name, str(len(finals)), _format(finals.mean()), f"[{_format(low)}, {_format(high)}]", _format(iqm(finals))]
        if threshold is not None:
            reached = frames_to_threshold(client, group, metric, threshold, budget)
            row.append(" / ".join(f"{int(f):,}" if f is not None else "not reached" for f in reached))
            solved = [f for f in reached if f is not None]
            row.append(f"{int(np.median(solved)):,}" if len(solved) == len(reached) else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


FIGURES = {
    "learning_curve": ("eval/return_mean", None, "Learning curve (evaluation)", "real environment frames", "evaluation return (mean over episodes)"),
    "score_per_iteration": ("train/episode_return", None, "Score per iteration", "real environment frames", "training episode return"),
    "score_per_episode": ("train/episode_return", "train/episodes", "Score per episode", "training episodes (count)", "training episode return"),
}


def write_figures(
    client: MlflowClient, groups: list[Group], out_dir: Path, metric: str = "eval/return_mean", budget: int | None = None
) -> list[Path]:
    """The learning curve of ``metric`` and the imagination-entropy design's score figures: one line per group, mean over
    seeds with a shaded 95% bootstrap interval; curves end at ``budget`` frames when given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (y_key, x_key, title, xlabel, ylabel) in FIGURES.items():
        if name == "learning_curve":
            y_key = metric
            ylabel = f"{metric} (mean over seeds, 95% CI)" if metric != "eval/return_mean" else ylabel
        curves = []
        for group in groups:
            histories = []
            for run in group.runs:
                history = history_until(client, run.info.run_id, y_key, budget)
                if x_key is not None and len(history):
                    x, y = joined(history_until(client, run.info.run_id, x_key, budget), history)
                    history = np.stack([x, y], axis=1)
                if len(history):
                    histories.append(history)
            if histories:
                grid, mean, low, high = aggregate_curve(histories)
                seeds = "seed" if len(histories) == 1 else "seeds"
                curves.append(plots.Curve(f"{group.name} ({len(histories)} {seeds})", grid, mean, low, high))
        if not curves:
            continue
        figure = plots.line_figure(curves, title, xlabel, ylabel, engineering_x=x_key is None)
        path = out_dir / f"{name}.png"
        figure.savefig(path)
        plots.close(figure)
        written.append(path)
    return written


def log_comparison(client: MlflowClient, experiment_name: str, groups: list[Group], files: list[Path],
                   params: dict[str, str]) -> str:
    """Log ``files`` (table and figures) as the artifacts of a new run in ``experiment_name``; return its id.

    The run is named after the groups it compares and tagged with the ids of the runs behind it.
    """
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(experiment_name, artifact_location=artifact_location(experiment_name)))
    run_ids = [run.info.run_id for group in groups for run in group.runs]
    # A tag holds at most 8,000 characters: the first 150 ids, whole (33 characters each).
    run = client.create_run(experiment_id, run_name=" vs ".join(group.name for group in groups),
                            tags={"mbrl.comparison.runs": ",".join(run_ids[:150])})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value[:6000])
    for path in files:
        client.log_artifact(run.info.run_id, str(path), "comparison")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def parse_tags(items: list[str]) -> dict[str, str]:
    """``["algorithm=DQN", "env_id=CartPole-v1"]`` -> a dict; a malformed item is a one-line error."""
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--tags {item}: expected KEY=VALUE, e.g. env_id=CartPole-v1.")
        tags[key] = value
    return tags
