"""compare.py on a store with runs of two algorithms and two seeds each."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.compare import aggregate_curve
from mbrl_lightning.stats import bootstrap_interval, iqm
from mbrl_lightning.tracking import tracking_uri

# (algorithm, seed) -> eval/return_mean at frames 1000, 2000, 3000
CURVES = {
    ("DQN", 0): [20.0, 80.0, 200.0],
    ("DQN", 1): [30.0, 120.0, 300.0],
    ("ImaginationDQN", 0): [100.0, 480.0, 500.0],
    ("ImaginationDQN", 1): [60.0, 300.0, 490.0],
}


def _make_store() -> None:
    client = MlflowClient(tracking_uri())
    experiment = client.create_experiment("cartpole", artifact_location=(Path("mlruns") / "artifacts").resolve().as_uri())
    for (algorithm, seed), values in CURVES.items():
        run = client.create_run(experiment, run_name=f"{algorithm}-CartPole-v1-s{seed}",
                                tags={"algorithm": algorithm, "env_id": "CartPole-v1", "seed": str(seed)})
        for step, value in zip((1000, 2000, 3000), values):
            client.log_metric(run.info.run_id, "eval/return_mean", value, step=step)
            client.log_metric(run.info.run_id, "train/episode_return", value / 2, step=step)
            client.log_metric(run.info.run_id, "train/episodes", step / 100, step=step)
        client.set_terminated(run.info.run_id)
    other = client.create_run(experiment, tags={"algorithm": "DQN", "env_id": "Acrobot-v1", "seed": "0"})
    client.log_metric(other.info.run_id, "eval/return_mean", -500.0, step=1000)
    client.set_terminated(other.info.run_id)


def test_compare_writes_table_with_seed_means_and_figures() -> None:
    _make_store()
    compare = runpy.run_path(str(REPO_ROOT / "scripts" / "compare.py"))["main"]
    assert compare(["--experiments", "cartpole", "--tags", "env_id=CartPole-v1", "--threshold", "475", "--out", "out"]) == 0
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in Path("out/table.md").read_text().splitlines()[2:]}
    assert set(rows) == {"DQN", "ImaginationDQN"}  # the Acrobot run is filtered out by its tag
    assert rows["DQN"][:2] == ["2", "250.0"]
    assert rows["ImaginationDQN"][:2] == ["2", "495.0"]
    assert rows["DQN"][-2:] == ["not reached / not reached", "n/a"]
    assert rows["ImaginationDQN"][-2:] == ["2,000 / 3,000", "2,500"]
    low, high = bootstrap_interval(np.array([500.0, 490.0]))
    assert rows["ImaginationDQN"][2] == f"[{low:,.1f}, {high:,.1f}]"
    for name in ("learning_curve", "score_per_iteration", "score_per_episode"):
        figure = Path("out") / f"{name}.png"
        assert figure.stat().st_size > 10_000, name


def test_compare_at_a_frame_budget_reads_the_point_that_crosses_it() -> None:
    _make_store()
    compare = runpy.run_path(str(REPO_ROOT / "scripts" / "compare.py"))["main"]
    assert compare(["--experiments", "cartpole", "--tags", "env_id=CartPole-v1", "--threshold", "400",
                    "--budget", "1500", "--out", "out"]) == 0
    lines = Path("out/table.md").read_text().splitlines()
    assert "1,500-frame eval/return_mean mean" in lines[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    assert rows["DQN"][:2] == ["2", "100.0"]  # the points at 2,000 frames, the first at or past 1,500
    assert rows["ImaginationDQN"][:2] == ["2", "390.0"]
    assert rows["ImaginationDQN"][-2:] == ["2,000 / not reached", "n/a"]  # seed 1 reaches 400 only at 3,000
    with pytest.raises(SystemExit):
        compare(["--experiments", "cartpole", "--budget", "0"])


def test_compare_logs_table_and_figures_to_an_mlflow_run() -> None:
    _make_store()
    compare = runpy.run_path(str(REPO_ROOT / "scripts" / "compare.py"))["main"]
    assert compare(["--experiments", "cartpole", "--tags", "env_id=CartPole-v1", "--out", "out",
                    "--log-to", "comparisons"]) == 0
    client = MlflowClient(tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("comparisons").experiment_id])
    assert run.info.run_name == "DQN vs ImaginationDQN" and run.info.status == "FINISHED"
    compared = set(run.data.tags["mbrl.comparison.runs"].split(","))
    assert len(compared) == 4 and run.data.params["experiments"] == "cartpole"
    logged = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "comparison")}
    assert logged == {"table.md", "learning_curve.png", "score_per_iteration.png", "score_per_episode.png"}
    table = Path(client.download_artifacts(run.info.run_id, "comparison/table.md", "downloaded"))
    assert table.read_text() == Path("out/table.md").read_text()


def test_statistics() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0, 7.0])
    assert iqm(values) == pytest.approx(np.mean([3.0, 4.0, 5.0, 6.0]))
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert bootstrap_interval(np.array([3.0])) == (3.0, 3.0)
    # Step-function curves on a common grid; a run that stopped early keeps its last value.
    grid, mean, low, high = aggregate_curve([np.array([[0, 0.0], [10, 1.0]]), np.array([[0, 2.0], [5, 4.0]])], points=3)
    assert grid.tolist() == [0, 5, 10]
    assert mean.tolist() == [1.0, 2.0, 2.5]
    assert (low <= mean).all() and (mean <= high).all()
    # Without hold_last the shorter run leaves the mean after its last point (5).
    _, mean, low, high = aggregate_curve([np.array([[0, 0.0], [10, 1.0]]), np.array([[0, 2.0], [4, 4.0]])],
                                         points=3, hold_last=False)
    assert mean.tolist() == [1.0, 0.0, 1.0]
    assert low[0] < high[0] and np.isnan(low[1:]).all() and np.isnan(high[1:]).all()  # one run left: no band
    # A run ending within 1% of the grid's end still counts there.
    _, mean, _, _ = aggregate_curve([np.array([[0, 0.0], [100, 1.0]]), np.array([[0, 2.0], [99.5, 4.0]])],
                                    points=2, hold_last=False)
    assert mean.tolist() == [1.0, 2.5]
    # Without omit_missing a NaN is not skipped.
    assert np.isnan(bootstrap_interval(np.array([1.0, np.nan, 3.0]))).all()
    assert bootstrap_interval(np.array([1.0, np.nan, 3.0]), omit_missing=True) == (1.0, 3.0)
