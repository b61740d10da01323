"""Every benchmark result as figures and tables, from the JSON-lines records in benchmarks/results/.

    python benchmarks/figures.py                      # writes results.md and PNGs to build/benchmark_figures/
    python benchmarks/figures.py --out site_figures   # elsewhere
    python benchmarks/figures.py --curve atari100k_mspacman_precision docs/images/mspacman_curve.png  # one file's curve
    python benchmarks/figures.py --curve atari100k_mspacman_precision mspacman.png --groups bf16      # its bf16 runs only

Each ``*.jsonl`` file under ``benchmarks/results/`` becomes one section: a learning-curve figure
(mean evaluation return over seeds against real env frames, 95% percentile-bootstrap band), an
aggregate figure (interquartile mean over seeds with a 95% bootstrap interval of the IQM: final
return, and frames to the solve threshold where the records give one), and the table beside them.
The docs build runs this on every build (``docs/gen_pages.py``), so the site always shows the
committed records. Lines of a record kind this script does not know are counted and named, not
drawn.

Known record kinds (the fields read):

* learning curve: ``eval_curve`` ``[[frames, return], ...]`` and ``seed`` (``benchmarks/planning.py``,
  ``benchmarks/continuous_control.py``); ``solve_threshold`` or ``threshold`` adds frames to reach it;
* evaluation point: one line per evaluation, as long runs write them: ``"evaluation": true`` with
  ``frames`` and ``return_mean`` (``continuous_control.py``), or ``agent_steps`` and ``score``
  (``atari100k.py``); a run's points (by ``run_id``) form its curve, so runs that stopped before
  their last line are drawn too, and a run's curve line, where it has one, replaces its points;
* solve: ``frames_to_solve``, ``solved`` and ``seed`` (``solve_cartpole.py``, ``cartpole_on_policy.py``).

A record is grouped by ``label``, else ``variant``, else ``algorithm``, else ``agent``, with its
overrides appended, else by its config's file name plus overrides. Where one group holds several
runs of a seed (a run started again), the newest counts. ``command``, ``source`` and
``measured_at`` are shown with the table. Summary lines (``"summary": true``) are skipped: the
summaries are recomputed from the per-seed lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbrl_lightning.compare import aggregate_curve
from mbrl_lightning.plots import Curve, close, line_figure, plt
from mbrl_lightning.stats import iqm

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Group:
    """The records of one algorithm (or variant) in one results file."""

    label: str
    curves: list[np.ndarray] = field(default_factory=list)
    finals: list[float] = field(default_factory=list)
    solve_frames: list[float | None] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    threshold: float | None = None
    commands: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    budget: float | None = None
    short: list[str] = field(default_factory=list)
    x_unit: str = "real environment frames"
    y_unit: str = "eval/return_mean"

    def settle_finals(self) -> None:
        """Each seed's return at the group's budget: the largest frame count more than half of its runs reached.

        A run that went further is read at its last evaluation within the budget, so the finals
        compare equal frames; a run that stopped short is drawn but named in ``short``, not counted.
        Runs that stop when they reach a threshold keep their last return.
        """
        if not self.curves:
            return
        if self.threshold is not None or self.solve_frames:
            self.finals = [float(curve[-1, 1]) for curve in self.curves]
            self.budget = max(float(curve[-1, 0]) for curve in self.curves)
            return
        ends = [float(curve[-1, 0]) for curve in self.curves]
        # 1% slack: batch granularity ends a config's runs a few frames apart.
        self.budget = max(end for end in ends if sum(other >= 0.99 * end for other in ends) > len(ends) / 2)
        self.finals = []
        for seed, curve in zip(self.seeds, self.curves):
            reached = curve[curve[:, 0] <= 1.01 * self.budget]
            if curve[-1, 0] < 0.99 * self.budget or not len(reached):
                self.short.append(f"seed {seed} stopped at {curve[-1, 0]:,.0f}")
            else:
                self.finals.append(float(reached[-1, 1]))


def record_label(record: dict) -> str:
    """The group a record belongs to (see the module docstring)."""
    overrides = " ".join(record.get("overrides") or [])
    for key in ("label", "variant", "algorithm", "agent"):
        if record.get(key):
            return str(record[key]) if key in ("label", "variant") else f"{record[key]} {overrides}".strip()
    label = Path(str(record.get("config", "?"))).stem
    return f"{label} {overrides}".strip()


def evaluation_point(record: dict) -> tuple[float, float] | None:
    """``(frames, return)`` of a one-evaluation line (``continuous_control.py``'s or ``atari100k.py``'s), else None."""
    if record.get("evaluation") and "frames" in record and "return_mean" in record:
        return float(record["frames"]), float(record["return_mean"])
    if "agent_steps" in record and "score" in record and not record.get("final"):
        return float(record["agent_steps"]), float(record["score"])
    return None


def first_reach(curve: np.ndarray, threshold: float) -> float | None:
    """First evaluated frame count whose return reached ``threshold`` (None: never)."""
    hits = curve[curve[:, 1] >= threshold, 0]
    return float(hits[0]) if len(hits) else None


@dataclass
class Run:
    """One run's records in a results file: its curve (a curve line's, else its evaluation points) and its last record."""

    label: str
    seed: int | None
    record: dict
    curve: np.ndarray | None = None
    points: dict[float, float] = field(default_factory=dict)

    def evaluation_curve(self) -> np.ndarray:
        """``[[frames, return], ...]``: the curve line's, else the points in frame order (a repeated frame: the last)."""
        if self.curve is not None:
            return self.curve
        return np.asarray(sorted(self.points.items()), dtype=float).reshape(-1, 2)


def read_runs(path: Path) -> tuple[list[Run], int]:
    """The runs of one records file, the newest of each (group, seed), and the number of lines of unknown kind."""
    runs: dict[object, Run] = {}
    unknown = 0
    for index, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("summary"):
            continue
        curve = np.asarray(record.get("eval_curve") or [], dtype=float).reshape(-1, 2)
        point = evaluation_point(record)
        if not len(curve) and "frames_to_solve" not in record and point is None:
            unknown += 1
            continue
        label, seed = record_label(record), record.get("seed")
        # Lines without a run id are one run each (the solve and planning records).
        # Evaluation points without a run id belong to their (group, seed): one run per seed.
        key = (label, record["run_id"]) if record.get("run_id") else (label, seed) if point is not None else index
        run = runs.pop(key, None) or Run(label, seed, record)
        runs[key] = run  # re-inserted: the dict keeps runs in order of their newest line
        run.record = record if point is None else run.record
        if len(curve):
            run.curve = curve
        elif point is not None:
            run.points[point[0]] = point[1]
    newest: dict[object, Run] = {}
    for key, run in runs.items():
        seed_key = (run.label, run.seed) if run.seed is not None else key
        newest.pop(seed_key, None)
        newest[seed_key] = run
    return list(newest.values()), unknown


def read_groups(path: Path) -> tuple[list[Group], int]:
    """The groups of one records file, in order of their runs' newest lines, and the number of lines of unknown kind."""
    groups: dict[str, Group] = {}
    runs, unknown = read_runs(path)
    for run in runs:
        record = run.record
        curve = run.evaluation_curve()
        group = groups.setdefault(run.label, Group(run.label))
        if "agent_steps" in record:  # Atari records count agent steps (frame_skip emulator frames each)
            group.x_unit = "agent steps"
            group.y_unit = "game score (raw, all lives)"
        group.seeds.append(int(run.seed if run.seed is not None else len(group.seeds)))
        threshold = record.get("solve_threshold", record.get("threshold"))
        if len(curve):
            group.curves.append(curve)
        if threshold is not None:
            group.threshold = float(threshold)
            group.solve_frames.append(first_reach(curve, threshold) if len(curve) else record.get("frames_to_solve"))
        elif "frames_to_solve" in record:
            group.solve_frames.append(record["frames_to_solve"] if record.get("solved") else None)
        for key, bucket in (("command", group.commands), ("source", group.sources), ("measured_at", group.dates)):
            if record.get(key) and record[key] not in bucket:
                bucket.append(str(record[key]))
    for group in groups.values():
        group.settle_finals()
    return list(groups.values()), unknown


def iqm_interval(values: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the IQM over seeds (resampling seeds with replacement)."""
    picks = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    estimates = iqm(values[picks], axis=1)
    return float(np.percentile(estimates, 2.5)), float(np.percentile(estimates, 97.5))


def solve_values(group: Group) -> tuple[np.ndarray, bool]:
    """Frames to the threshold per seed; a seed that never reached it counts as its last frame (a lower bound)."""
    censored = False
    values = []
    for index, frames in enumerate(group.solve_frames):
        if frames is None:
            censored = True
            frames = group.curves[index][-1, 0] if index < len(group.curves) else np.nan
        values.append(frames)
    return np.asarray(values, dtype=float), censored


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def aggregate_figure(groups: list[Group], title: str) -> plt.Figure | None:
    """IQM over seeds with its 95% bootstrap interval: final return, and frames to the threshold."""
    panels = [("final eval return, at each group's budget (IQM)", [np.asarray(g.finals) for g in groups])]
    if any(g.solve_frames for g in groups):
        panels.append(("real frames to the threshold (IQM)", [solve_values(g)[0] for g in groups]))
    if not any(len(v) for v in panels[0][1]):
        panels = panels[1:]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.5, 0.55 * len(groups) + 1.4),
                                dpi=100, squeeze=False)
    for axis, (xlabel, values_per_group) in zip(axes[0], panels):
        for row, values in enumerate(values_per_group):
            values = values[~np.isnan(values)] if len(values) else values
            if not len(values):
                continue
            centre = float(iqm(values))
            low, high = iqm_interval(values)
            axis.errorbar(centre, row, xerr=[[centre - low], [high - centre]], fmt="o", color=f"C{row % 10}", capsize=4)
            axis.plot(values, np.full(len(values), row) + 0.18, "|", color=f"C{row % 10}", alpha=0.6)
        axis.set_yticks(range(len(groups)), [g.label for g in groups])
        axis.set_ylim(-0.6, len(groups) - 0.4)
        axis.invert_yaxis()
        axis.set_xlabel(xlabel)
        axis.grid(True, axis="x", alpha=0.3)
    figure.suptitle(f"{title}: IQM over seeds, 95% bootstrap interval (ticks: seeds)", fontsize="medium")
    figure.tight_layout()
    return figure


def curve_figure(groups: list[Group], title: str) -> plt.Figure | None:
    """Mean evaluation return over seeds against real env frames, 95% bootstrap band."""
    curves = []
    for group in groups:
        if group.curves:
            # Runs that stop at a threshold hold their solved value; runs stopped before their
            # budget leave the mean, which past their end averages the runs that went on.
            stops_when_solved = group.threshold is not None or bool(group.solve_frames)
            grid, mean, low, high = aggregate_curve(group.curves, hold_last=stops_when_solved)
            curves.append(Curve(f"{group.label} ({len(group.curves)} seeds)", grid, mean, low, high))
    if not curves:
        return None
    figure = line_figure(curves, f"{title}: evaluation, mean over seeds and 95% bootstrap band",
                         groups[0].x_unit, groups[0].y_unit)
    figure.axes[0].title.set_fontsize("medium")  # long record names must fit the figure's width
    threshold = next((g.threshold for g in groups if g.threshold is not None), None)
    if threshold is not None:
        figure.axes[0].axhline(threshold, color="grey", linestyle=":", linewidth=1)
    return figure


def table(groups: list[Group]) -> str:
    """The numbers behind the figures, one row per group."""
    solve = any(g.solve_frames for g in groups)
    header = ["group", "seeds", "budget (frames)", "final return per seed", "final return IQM [95% CI]"]
    if solve:
        header += ["frames to threshold per seed", "frames IQM [95% CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for group in groups:
        finals = np.asarray(group.finals)
        budget = group.budget
        row = [group.label, ", ".join(str(s) for s in group.seeds), f"{budget:,.0f}" if budget is not None else ""]
        if len(finals):
            low, high = iqm_interval(finals)
            row += [" / ".join(_number(v) for v in finals), f"{_number(float(iqm(finals)))} [{_number(low)}, {_number(high)}]"]
        else:
            row += ["", ""]
        if solve:
            values, censored = solve_values(group)
            per_seed = " / ".join("not reached" if f is None else f"{f:,.0f}" for f in group.solve_frames)
            if len(values) and not np.isnan(values).any():
                low, high = iqm_interval(values)
                bound = "≥ " if censored else ""
                row += [per_seed, f"{bound}{_number(float(iqm(values)))} [{_number(low)}, {_number(high)}]"]
            else:
                row += [per_seed, ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def section(path: Path, out: Path) -> str:
    """The Markdown of one records file, writing its figures into ``out``."""
    groups, unknown = read_groups(path)
    name = path.stem
    parts = [f"## {name}", "", f"Records: `benchmarks/results/{path.name}`."]
    if not groups:
        return "\n".join(parts + ["", f"No record of a known kind ({unknown} lines of another kind).", ""])
    images = []
    for suffix, figure in (("curve", curve_figure(groups, name)), ("iqm", aggregate_figure(groups, name))):
        if figure is not None:
            figure.savefig(out / "figures" / f"{name}_{suffix}.png")
            close(figure)
            images.append(f"![{name} {suffix}](figures/{name}_{suffix}.png)")
    threshold = next((g.threshold for g in groups if g.threshold is not None), None)
    notes = []
    if threshold is not None:
        notes.append(f"Threshold: evaluation return ≥ {threshold:g}; a seed that never reached it counts as its "
                     "last evaluated frame count, so its IQM is a lower bound (≥).")
    for group in groups:
        if group.short:
            notes.append(f"{group.label}: {', '.join(group.short)} {group.x_unit} (drawn; its final return at the "
                         f"budget of {group.budget:,.0f} is not measured).")
    if unknown:
        notes.append(f"{unknown} lines of another record kind are not drawn.")
    commands = [c for g in groups for c in g.commands]
    sources = sorted({s for g in groups for s in g.sources})
    dates = sorted({d for g in groups for d in g.dates})
    # One paragraph per image, so the grid puts the figures side by side.
    parts += ["", '<div class="grid" markdown>', "", "\n\n".join(images), "", "</div>", "", table(groups), ""]
    parts += [note + "\n" for note in notes]
    if sources:
        parts += [f"Source: {'; '.join(sources)}.", ""]
    if dates:
        parts += [f"Measured: {dates[0][:10]}" + (f" to {dates[-1][:10]}" if dates[-1][:10] != dates[0][:10] else "") + ".", ""]
    if commands:
        parts += ["Commands (one process per seed):", "", "```bash", *dict.fromkeys(commands), "```", ""]
    return "\n".join(parts)


def write_report(results: Path, out: Path) -> Path:
    """``out/results.md`` and ``out/figures/*.png`` for every records file under ``results``."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    files = sorted(results.rglob("*.jsonl"))
    head = ["# Benchmark results", "",
            "Drawn by `python benchmarks/figures.py` from the records committed under `benchmarks/results/` "
            "(the docs build runs it). Each section is one records file. Curves: mean over seeds of the "
            "deterministic evaluation return against real environment frames, shaded 95% percentile-bootstrap "
            "interval, over the runs that reached each frame count (a run that stops once it reaches a "
            "threshold holds its last value). Aggregates: interquartile mean (IQM) "
            "over seeds with a 95% percentile-bootstrap interval of the IQM. With three seeds these intervals "
            "are wide: read them as what was measured, not as a ranking.", ""]
    if not files:
        head += ["No records are committed yet.", ""]
    body = [section(path, out) for path in files]
    report = out / "results.md"
    report.write_text("\n".join(head + body))
    return report


def main() -> None:
    """Write the report of every committed record."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of *.jsonl records")
    parser.add_argument("--out", type=Path, default=Path("build/benchmark_figures"))
    parser.add_argument("--curve", nargs=2, metavar=("RECORDS", "PNG"),
                        help="only draw the learning curve of RECORDS (a file name under --results, without .jsonl) into PNG")
    parser.add_argument("--groups", nargs="+", metavar="LABEL",
                        help="with --curve: draw only these groups (labels as in the legend, without the seed count)")
    args = parser.parse_args()
    if args.curve:
        name, png = args.curve
        records = args.results / f"{name}.jsonl"
        if not records.is_file():
            known = ", ".join(sorted(path.stem for path in args.results.glob("*.jsonl")))
            parser.error(f"--curve {name}: no {records}; records here: {known}")
        groups, _ = read_groups(records)
        if args.groups:
            labels = [group.label for group in groups]
            missing = [label for label in args.groups if label not in labels]
            if missing:
                parser.error(f"--groups {' '.join(missing)}: not in {records.name}; its groups: {', '.join(labels)}")
            groups = [group for group in groups if group.label in args.groups]
        figure = curve_figure(groups, name)
        if figure is None:
            parser.error(f"--curve {name}: no learning curve in {args.results / name}.jsonl")
        figure.savefig(png)
        close(figure)
        print(f"figure: {png}", file=sys.stderr)
        return
    report = write_report(args.results, args.out)
    print(f"report: {report}", file=sys.stderr)
    for figure in sorted((args.out / "figures").glob("*.png")):
        print(f"figure: {figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
