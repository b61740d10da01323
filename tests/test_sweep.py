"""Sweeps: configs x seeds x overrides as processes, finished runs skipped, the compare table at the end."""

from __future__ import annotations

from pathlib import Path

from conftest import CONF_DIR
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri
from mbrl_lightning.tuning.sweep import main

TINY = ["--model.total_frames", "256", "--model.frames_per_batch", "64", "--model.updates_per_batch", "2",
        "--model.learning_starts", "128", "--model.eval_every_frames", "128", "--model.eval_episodes", "2",
        "--checkpoint.every_n_frames", "0", "--plots.enabled", "false"]
CONFIG = str(CONF_DIR / "cartpole_dqn.yaml")


def test_a_sweep_runs_each_combination_once_and_ends_with_the_table(capsys, monkeypatch, subprocess_env) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    args = ["--configs", CONFIG, "--seeds", "0", "1", "--vary", "model.gamma=0.9", "--jobs", "2", "--", *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 of 2 runs already finished" in out
    assert "| cartpole_dqn model.gamma=0.9 | 2 |" in out  # one row, both seeds
    client = MlflowClient(tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("cartpole_dqn").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["cartpole_dqn_model.gamma=0.9-s0", "cartpole_dqn_model.gamma=0.9-s1"]
    assert {run.data.params["model.gamma"] for run in runs} == {"0.9"}
    assert {run.data.params["seed_everything"] for run in runs} == {"0", "1"}
    assert Path("sweep/table.md").is_file() and Path("sweep/learning_curve.png").is_file()

    assert main(args) == 0  # the same command again: nothing left to run
    assert "2 of 2 runs already finished in" in capsys.readouterr().out
    assert len(client.search_runs([client.get_experiment_by_name("cartpole_dqn").experiment_id])) == 2


def test_list_numbers_the_runs_for_an_array_job(capsys) -> None:
    assert main(["--configs", CONFIG, "--seeds", "0", "1", "--vary", "model.lr=0.001,0.01", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["0", "cartpole_dqn_model.lr=0.001-s0"], ["1", "cartpole_dqn_model.lr=0.001-s1"],
        ["2", "cartpole_dqn_model.lr=0.01-s0"], ["3", "cartpole_dqn_model.lr=0.01-s1"]]


def test_an_unknown_key_or_a_bad_vary_is_refused_with_one_line(capsys) -> None:
    assert main(["--configs", CONFIG, "--vary", "model.gama=0.9"]) == 2
    assert capsys.readouterr().err.strip() == "error: model.gama: unknown option of mbrl_lightning.algorithms.DQN (did you mean: gamma?)"
    assert main(["--configs", CONFIG, "--vary", "model.gamma"]) == 2
    assert "--vary 'model.gamma': expected KEY=VALUE[,VALUE...]" in capsys.readouterr().err
    assert main(["--configs", CONFIG, "--index", "7"]) == 2
    assert "--index 7: the sweep has runs 0 to 2." in capsys.readouterr().err
