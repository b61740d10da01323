"""``--help`` lists the options of this project's runs and every algorithm; ``--model.help NAME`` works for each."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONF_DIR, REPO_ROOT

from mbrl_lightning.cli import main
from mbrl_lightning.cli_help import algorithm_names

FIT = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py")]
ALGORITHMS = ["A2C", "AtariDQN", "AtariSPR", "DDPG", "DQN", "DynaDDPG", "DynaQ", "ImaginationDDPG", "ImaginationDQN",
              "ImaginationSAC", "ImaginationTD3", "KnownModelMPC", "MBPO", "MCTSAgent", "ModelBasedPPO", "PETS", "PPO", "SAC",
              "TD3"]


def test_help_shows_run_options_and_the_config_algorithm_not_unused_trainer_flags(subprocess_env) -> None:
    result = subprocess.run([*FIT, "--config", str(CONF_DIR / "cartpole_mbppo.yaml"), "--help"],
                            capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for shown in ("--ckpt_path", "--checkpoint.every_n_frames", "--trainer.precision", "--trainer.devices",
                  "--model.imagination_iterations", "--model.total_frames"):
        assert shown in text, shown
    for hidden in ("--trainer.max_epochs", "--trainer.limit_val_batches", "--data", "DataModule", "torch.ao.nn"):
        assert hidden not in text, hidden
    assert text.rstrip().splitlines()[-1] == f"Algorithms (--model.help NAME lists one's options): {', '.join(ALGORITHMS)}"


def test_model_help_by_short_name_from_the_shell(subprocess_env) -> None:
    result = subprocess.run([*FIT, "--model.help", "ModelBasedPPO"], capture_output=True, text=True,
                            env=subprocess_env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--model.imagination_iterations" in result.stdout and "--model.clip_epsilon" in result.stdout


@pytest.mark.parametrize("name", ALGORITHMS)
def test_model_help_works_for_every_algorithm(name: str, capsys) -> None:
    assert name in algorithm_names()
    with pytest.raises(SystemExit) as exited:
        main(["--model.help", name])
    assert exited.value.code == 0
    assert "--model.total_frames" in capsys.readouterr().out
