"""Shared fixtures: every test runs in its own folder with its own embedded MLflow store."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

# Tests use small networks, for which one thread is fastest, and the suite shares few cores.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


# Tests of a minute or more on two cores, longest first. They start first, so that the two xdist
# workers (``--dist worksteal``: an idle worker takes the other's queued tests) end together
# instead of one of them running a long test alone at the end.
LONG_FIRST = (
    "test_ddp.py::",
    "test_team.py::test_a_server_that_goes_away",
    "test_episode_replay.py::test_resume_mid_episode",
    "test_determinism.py::",
    "test_reliability.py::test_a_signal_stops",
    "test_sweep.py::test_a_sweep_runs",
    "test_resume_cli.py::",
    "test_tune.py::test_three_trials",
    "test_compare_cli.py::",
    "test_team.py::",
    "test_cli.py::test_fit_with_overrides",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of tests that need a folder without a store."""
    config.addinivalue_line("markers", "fresh_store: start in a folder with no mlruns/ (the store is created by the test)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests of ``LONG_FIRST`` first, in its order; the others keep theirs."""
    def rank(item: pytest.Item) -> int:
        return next((index for index, prefix in enumerate(LONG_FIRST) if prefix in item.nodeid), len(LONG_FIRST))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema made once per worker: creating one costs seconds, copying it does not."""
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """Run in a fresh folder so ``mlruns/`` and ``checkpoints/`` never leak between tests.

    The folder starts with a copy of an empty store (``mlruns/mlflow.db``), which is what the first
    run in a folder creates; tests marked ``fresh_store`` start without one.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    if request.node.get_closest_marker("fresh_store") is None:
        (tmp_path / "mlruns").mkdir()
        shutil.copy(request.getfixturevalue("empty_store"), tmp_path / "mlruns" / "mlflow.db")
    return tmp_path


def fit_args(config: str = "cartpole_dqn.yaml", *overrides: str) -> list[str]:
    """Arguments of ``scripts/fit.py`` for a config of the repository, plus overrides.

    The end-of-run figures are off (drawing them costs more than a tiny run's training); a test of
    them passes ``--plots.enabled true``.
    """
    return ["--config", str(CONF_DIR / config), "--trainer.enable_progress_bar", "false", "--plots.enabled", "false",
            *overrides]


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for running the CLI as a user would, in a subprocess."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    # Subprocesses run in the test's folder: import this checkout's package, not an installed copy.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_fit(*args: str, callbacks: tuple = ()):
    """Run ``fit`` in-process as the CLI would; return the CLI (model, trainer, config)."""
    from mbrl_lightning.cli import MBRLCLI

    cli = MBRLCLI(list(args))
    cli.trainer.callbacks.extend(callbacks)
    cli.fit()
    return cli
