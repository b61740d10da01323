"""Shared fixtures: every test runs in its own folder with its own embedded MLflow store."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
from pathlib import Path

import pytest
import torch

# Tests use small networks, for which one thread is fastest, and the suite shares few cores.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


# Tests of half a minute or more on two cores, longest first. xdist's worksteal hands each worker a
# contiguous share of the collected order, and a worker that runs dry takes the tail of another's
# queue; so these are dealt out to the heads of the shares: every worker starts on long tests, and
# the queues end on short ones, so the workers end together.
LONG_FIRST = (
    "test_ddp.py::test_two_process",
    "test_ddp.py::test_mbppo",
    "test_team.py::test_a_server_that_goes_away",
    "test_mbppo.py::test_mbppo_return_rises",
    "test_reliability.py::test_a_signal_stops",
    "test_episode_replay.py::test_resume_mid_episode",
    "test_mbpo.py::test_a_resumed_mbpo_run",
    "test_mbpo.py::test_mbpo_retrains",
    "test_ddp_stop.py::",
    "test_ddp.py::test_world_model_training",
    "test_tune.py::test_three_trials",
    "test_dqn.py::test_dqn_return_rises",
    "test_on_policy.py::test_return_rises",
    "test_resume_cli.py::",
    "test_minitaur.py::test_observation_normalisation",
    "test_resume.py::",
    "test_determinism.py::",
    "test_sweep.py::test_a_sweep_runs",
    "test_pets.py::test_pets_improves",
    "test_compare_cli.py::",
    "test_team.py::",
    "test_cli.py::test_fit_with_overrides",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of tests that need a folder without a store."""
    config.addinivalue_line("markers", "fresh_store: start in a folder with no mlruns/ (the store is created by the test)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Deal the tests of ``LONG_FIRST`` in its order to the heads of the workers' shares; the others keep theirs."""
    def rank(item: pytest.Item) -> int:
        return next((index for index, prefix in enumerate(LONG_FIRST) if prefix in item.nodeid), len(LONG_FIRST))

    ordered = sorted(items, key=rank)
    long = [item for item in ordered if rank(item) < len(LONG_FIRST)]
    rest = ordered[len(long):]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    sizes, left = [], len(items)
    for worker in range(workers):  # the shares worksteal sends: what is left, over the workers left
        sizes.append(left // (workers - worker))
        left -= sizes[-1]
    heads = [long[worker::workers] for worker in range(workers)]
    if any(len(head) > size for head, size in zip(heads, sizes)):
        items[:] = ordered  # a selection of mostly long tests: long first is all there is to do
        return
    dealt: list[pytest.Item] = []
    for head, size in zip(heads, sizes):
        dealt += head + rest[:size - len(head)]
        rest = rest[size - len(head):]
    items[:] = dealt


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """With ``TEST_CPU_LOG`` set, append each test's CPU seconds to that file as a JSON line.

    Counted: this process and the subprocesses it waited for (servers left running are not). On a
    shared machine wall times follow the load; CPU seconds are what the suite costs on any machine.
    """
    path = os.environ.get("TEST_CPU_LOG")
    before = _cpu_seconds() if path else 0.0
    yield
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"test": item.nodeid, "cpu_s": round(_cpu_seconds() - before, 2)}) + "\n")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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
