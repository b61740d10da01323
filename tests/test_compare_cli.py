"""compare.py from the shell counts seeds, not runs, and compares runs of unequal length at a common frame count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

COMPARE = [sys.executable, str(REPO_ROOT / "scripts" / "compare.py"), "--experiments", "cartpole", "--out", "out"]


def _log_run(client: MlflowClient, experiment: str, seed: int, curve: dict[int, float]) -> str:
    run = client.create_run(experiment, tags={"algorithm": "DQN", "env_id": "CartPole-v1", "seed": str(seed)})
    for step, value in curve.items():
        client.log_metric(run.info.run_id, "eval/return_mean", value, step=step)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_repeated_seeds_are_refused_and_unequal_lengths_compare_at_the_shortest(subprocess_env) -> None:
    client = MlflowClient(tracking_uri())
    experiment = client.create_experiment("cartpole", artifact_location=(Path("mlruns") / "a").resolve().as_uri())
    first = _log_run(client, experiment, 0, {5120: 300.0, 10240: 400.0, 15104: 100.0})
    rerun = _log_run(client, experiment, 0, {2560: 200.0, 5120: 500.0})
    _log_run(client, experiment, 1, {5120: 250.0, 10240: 500.0})

    refused = subprocess.run(COMPARE, capture_output=True, text=True, env=subprocess_env, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: group DQN: 2 runs of seed 0 ({first}, {rerun}); a seed counts once. Narrow the selection "
        "(--tags, --experiments) or pass --latest-per-seed to use the newest run of each seed.")
    assert not Path("out").exists()

    newest = subprocess.run([*COMPARE, "--latest-per-seed"], capture_output=True, text=True, env=subprocess_env,
                            timeout=120)
    assert newest.returncode == 0, newest.stderr
    assert "warning: runs end at different frame counts (5,120 to 10,240); comparing at 5,120 frames" in newest.stderr
    header, _, row = Path("out/table.md").read_text().splitlines()
    assert "5,120-frame eval/return_mean mean" in header
    # Seed 0 is its newest run (500 at 5,120), seed 1 is read at 5,120 (250), not at its end (500).
    assert [cell.strip() for cell in row.split("|")[1:4]] == ["DQN", "2", "375.0"]
