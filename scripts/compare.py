"""Aggregate MLflow runs over seeds into a Markdown table and learning-curve figures.

    python scripts/compare.py --experiments cartpole_dqn cartpole_ppo --tags env_id=CartPole-v1
    python scripts/compare.py --experiments benchmark_cartpole_dqn benchmark_cartpole_dqn_imagination \\
        --threshold 475 --out results/dqn

Runs are grouped by the ``algorithm`` tag (``--group-by`` takes tags, ``param:<name>``,
``experiment`` or ``run_name``); each group's seeds (its runs' ``seed`` tags, each counted once)
give the mean of the final metric, its 95% percentile-bootstrap interval and the interquartile
mean. Two runs of one seed in a group are refused (``--latest-per-seed`` keeps the newest); runs
that end at different frame counts are compared at the shortest one's end, with a warning. Figures: ``learning_curve.png``
(x = real env frames, shaded 95% interval), ``score_per_iteration.png`` and ``score_per_episode.png``.
``--log-to EXPERIMENT`` also logs the table and figures as the artifacts of a new MLflow run there,
so that they sit in the MLflow UI beside the runs they compare.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from mbrl_lightning.compare import (
    common_budget,
    group_runs,
    log_comparison,
    markdown_table,
    one_run_per_seed,
    parse_tags,
    run_ends,
    select_runs,
    write_figures,
)
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import tracking_uri


def main(argv: list[str] | None = None) -> int:
    """Select, group, tabulate and plot; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", required=True, help="MLflow experiment names")
    parser.add_argument("--tags", nargs="*", default=[], help="KEY=VALUE tag filters, e.g. algorithm=DQN env_id=CartPole-v1")
    parser.add_argument("--group-by", nargs="+", default=["algorithm"], help="tags, param:<name>, experiment or run_name")
    parser.add_argument("--metric", default="eval/return_mean", help="the metric tabulated and plotted")
    parser.add_argument("--threshold", type=float, default=None, help="also tabulate the frames to reach this value")
    parser.add_argument("--out", type=Path, default=Path("comparison"), help="folder for table.md and the figures")
    parser.add_argument("--budget", type=int, default=None, metavar="FRAMES",
                        help="compare at this many env frames: every history ends at its first point at or past it")
    parser.add_argument("--include-unfinished", action="store_true", help="also use running, failed or killed runs")
    parser.add_argument("--latest-per-seed", action="store_true",
                        help="where a group has several runs of one seed, use the newest (default: refuse)")
    parser.add_argument("--log-to", metavar="EXPERIMENT", help="also log the table and figures to a new MLflow run there")
    args = parser.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget {args.budget}: expected a positive number of env frames")
    try:
        client = MlflowClient(tracking_uri())
        runs = select_runs(client, args.experiments, parse_tags(args.tags), finished_only=not args.include_unfinished)
        if not runs:
            raise ConfigurationError(f"--experiments {' '.join(args.experiments)}: no finished run matches the tags.")
        groups = one_run_per_seed(group_runs(client, runs, args.group_by), args.latest_per_seed)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.budget, warning = common_budget(run_ends(client, groups, args.metric), args.budget)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    table = markdown_table(client, groups, args.metric, args.threshold, args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    print(table)
    figures = write_figures(client, groups, args.out, args.metric, args.budget)
    for path in figures:
        print(f"figure: {path}")
    print(f"table: {args.out / 'table.md'}")
    if args.log_to:
        params = {"experiments": " ".join(args.experiments), "tags": " ".join(args.tags),
                  "group_by": " ".join(args.group_by), "metric": args.metric, "budget": str(args.budget)}
        run_id = log_comparison(client, args.log_to, groups, [args.out / "table.md", *figures], params)
        print(f"MLflow run: {run_id} (experiment {args.log_to!r}, artifacts under comparison/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
