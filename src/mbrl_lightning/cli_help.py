"""``fit.py --help``: the options of this project's runs, then those of the config's algorithm."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
import io
import re
import textwrap
from collections.abc import Callable, Sequence

from mbrl_lightning import algorithms
from mbrl_lightning.algorithms import RLModule
from mbrl_lightning.cli_resume import model_identity, option_value, read_yaml
from mbrl_lightning.errors import ConfigurationError


def import_algorithms() -> None:
    """Import every algorithm module, so that each is a known subclass: listed in ``--help``, named by short name."""
    for module in pkgutil.iter_modules(algorithms.__path__):
        importlib.import_module(f"{algorithms.__name__}.{module.name}")


def algorithm_names() -> list[str]:
    """Short names of every algorithm class that can be trained (subclasses of RLModule, abstract ones left out)."""
    import_algorithms()
    found: list[type] = []
    pending = list(RLModule.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return sorted({cls.__name__ for cls in found if not inspect.isabstract(cls)})


def print_help(make_cli: Callable[[list[str]], object], argv: Sequence[str]) -> int:
    """Print the run options (with ``--config``'s values as defaults) and the config's algorithm options; exit code 0.

    ``make_cli`` builds the command line from arguments (it prints help and exits on ``--help``).
    """
    config_path = option_value(argv, "--config")
    with_config = ["--config", config_path] if config_path else []
    _printing_help(make_cli, [*with_config, "--help"])
    class_path = model_identity(read_yaml(config_path))[0] if config_path else None
    if class_path is not None:
        print(f"\nOptions of the config's algorithm, {class_path} (--model.<option> VALUE):")
        _printing_help(make_cli, [*with_config, "--model.help", class_path])
    print(f"\nAlgorithms (--model.help NAME lists one's options): {', '.join(algorithm_names())}")
    return 0


# jsonargparse lists every imported subclass of an argument's type; for a torch.nn.Module that is
# hundreds of torch and torchrl classes. The listing keeps this project's.
_SUBCLASSES = re.compile(r"known subclasses:\s*([^)]*)\)")
_PROJECT = "mbrl_lightning."
_EVERY_MODULE = 100


def shorten_subclass_lists(text: str) -> str:
    """Help text whose "known subclasses" lists name only this project's classes, with a count of the others."""

    def shorten(match: re.Match) -> str:
        names = [name.strip() for name in re.sub(r"\s*\n\s*", "", match.group(1)).split(",") if name.strip()]
        # A list this long is every torch.nn.Module: of this project's, only the networks apply.
        project = _PROJECT + "nets." if len(names) > _EVERY_MODULE else _PROJECT
        kept = [name for name in names if name.startswith(project)]
        others = f"{len(names) - len(kept)} more from torch, other libraries and this project" if len(kept) < len(names) else ""
        listed = ", ".join(filter(None, [*kept, others]))
        wrapped = textwrap.wrap(f"known subclasses: {listed})", width=56, subsequent_indent=" " * 24,
                                break_long_words=False, break_on_hyphens=False)
        return "\n".join(wrapped)

    return _SUBCLASSES.sub(shorten, text)


def _printing_help(make_cli: Callable[[list[str]], object], args: list[str]) -> None:
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            make_cli(args)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise ConfigurationError(f"--help: the options could not be listed (exit code {exit_.code}).") from None
    print(shorten_subclass_lists(output.getvalue()), end="")
