"""Parse a config with overrides the way ``fit`` does, without building anything."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import yaml
from jsonargparse import ArgumentError

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.cli_errors import condense_parser_error
from mbrl_lightning.errors import ConfigurationError


# Trials and checks pass ``fit`` its arguments in-process while the tune command has its own argv.
warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")


class _ParseOnlyCLI(MBRLCLI):
    """The ``fit`` parser: keys are checked against the classes' signatures, nothing is instantiated."""

    def before_instantiate_classes(self) -> None:
        """Nothing to prepare: no store is opened and no checkpoint looked up."""

    def instantiate_classes(self) -> None:
        """Nothing is built: the parsed config is all a caller needs."""

    def after_instantiate_classes(self) -> None:
        """Nothing was built."""


def resolved_config(args: Sequence[str]) -> dict:
    """The whole config ``fit`` would run for ``args``; an unknown key or bad value is a ConfigurationError."""
    try:
        cli = _ParseOnlyCLI(list(args))
    except ArgumentError as error:
        raise ConfigurationError(condense_parser_error(str(error))) from None
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
