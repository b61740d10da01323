"""Every experiment YAML in conf/ parses and builds its model, trainer and MLflow logger."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONF_DIR
from torchrl.envs.utils import check_env_specs

from mbrl_lightning.algorithms import RLModule
from mbrl_lightning.cli import MBRLCLI

CONFIGS = sorted(CONF_DIR.glob("*.yaml"))


def test_there_are_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates(config: Path) -> None:
    cli = MBRLCLI(["--config", str(config)])
    assert isinstance(cli.model, RLModule)
    assert cli.config.experiment_name == config.stem
    check_env_specs(cli.model.env.make(seed=0))
