"""Turn configuration errors into the one line a user needs: the offending key and what is allowed."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Sequence

from mbrl_lightning.errors import ConfigurationError

_KEY = re.compile(r'Parser key "([^"]+)":')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)':")
_UNKNOWN_OPTION = re.compile(r"Option '([^']+)' is not accepted")
_EXPECTED = re.compile(r"Expected an? (.+?)\. Got value: (.*)")
_EXPECTED_ALTERNATIVE = re.compile(r"Expected an? (.+)$")
_GIVEN = re.compile(r"Given value: (.*)")
_LITERAL = re.compile(r"typing\.Literal\[(.*)\]")
_CLASS_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_UNRECOGNIZED = re.compile(r"[Uu]nrecognized arguments: (\S+)")


def find_configuration_error(error: BaseException) -> ConfigurationError | None:
    """The ConfigurationError behind ``error`` (jsonargparse wraps those raised while instantiating)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConfigurationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _accepted_options(class_path: str) -> list[str]:
    """Constructor parameters of ``class_path`` and of the bases it forwards ``**kwargs`` to."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return []
    options: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        options += [p for p in inspect.signature(init).parameters if p not in ("self", "args", "kwargs")]
    return list(dict.fromkeys(options))


def _describe_expected(expected: str, given: str) -> str:
    literal = _LITERAL.search(expected)
    if literal:
        return f"got {given!r}; allowed values: {literal.group(1)}"
    kind = _CLASS_NAME.sub(r"\1", expected)
    return f"expected {kind}, got {given!r}"


def condense_parser_error(message: str, options: Sequence[str] = ()) -> str:
    """One line from jsonargparse's nested report, e.g. ``model.lr: expected float, got 'abc'``.

    ``options`` are the parser's flags: an unrecognized one gets the closest of them as a hint.
    """
    if match := _UNRECOGNIZED.search(message):
        flag = match.group(1).split("=", 1)[0]
        close = difflib.get_close_matches(flag, options, n=3, cutoff=0.7)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        return f"{flag}: unknown option{hint}"
    keys: list[str] = []
    alternatives: list[str] = []
    class_path = None
    for line in message.splitlines():
        line = line.strip().removeprefix("- ")
        if match := _KEY.match(line):
            keys.append(match.group(1))
        elif match := _CLASS_PATH.match(line):
            class_path = match.group(1)
        elif match := _UNKNOWN_OPTION.search(line):
            option = match.group(1)
            key = ".".join(keys + [option])
            close = difflib.get_close_matches(option, _accepted_options(class_path or ""), n=3)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            owner = f" of {class_path}" if class_path else ""
            return f"{key}: unknown option{owner}{hint}"
        elif match := _EXPECTED.match(line):
            return f"{'.'.join(keys)}: {_describe_expected(match.group(1), match.group(2))}"
        elif match := _EXPECTED_ALTERNATIVE.match(line):
            alternatives.append(_CLASS_NAME.sub(r"\1", match.group(1)))
        elif (match := _GIVEN.match(line)) and alternatives:
            return f"{'.'.join(keys)}: expected {' or '.join(alternatives)}, got {match.group(1)!r}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    return f"{'.'.join(keys)}: {first}" if keys and not first.startswith("Parser key") else first
