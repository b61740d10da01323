"""A study's search space: ``conf/search/<name>.yaml`` read, checked and sampled."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from mbrl_lightning.errors import ConfigurationError

DISTRIBUTIONS = ("float", "int", "categorical")
DIRECTIONS = ("maximize", "minimize")
_SPACE_KEYS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}
_TOP_KEYS = {"config", "metric", "direction", "n_trials", "fixed", "sampler", "pruner", "space"}


@dataclass(frozen=True)
class Parameter:
    """One searched config key: its distribution and bounds (or choices)."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value of this key for ``trial``."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        # Optuna stores only scalars as choices; lists and dicts (layer sizes) travel as JSON text.
        labels = [choice if _is_scalar(choice) else json.dumps(choice) for choice in self.choices]
        label = trial.suggest_categorical(self.key, labels)
        return self.choices[labels.index(label)]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


@dataclass(frozen=True)
class SearchSpace:
    """What a study searches, what it optimises, and how it samples and prunes.

    Keys of the YAML: ``config`` (the experiment, default ``conf/<name>.yaml``), ``metric``
    (an ``eval/*`` metric, default ``eval/return_mean``), ``direction``, ``n_trials``, ``fixed``
    (overrides every trial shares, e.g. a shorter budget), ``sampler`` and ``pruner``
    (``class_path``/``init_args`` of Optuna classes) and ``space`` (config key -> distribution).
    """

    path: Path
    config: Path
    parameters: tuple[Parameter, ...]
    metric: str = "eval/return_mean"
    direction: str = "maximize"
    n_trials: int = 20
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The searched keys' values for ``trial``."""
        return {parameter.key: parameter.suggest(trial) for parameter in self.parameters}

    def make_sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler; a seeded one gets ``seed + seed_offset`` so parallel workers draw different values."""
        spec = self.sampler or {"class_path": "optuna.samplers.TPESampler"}
        init_args = dict(spec.get("init_args") or {})
        if init_args.get("seed") is not None:
            init_args["seed"] = int(init_args["seed"]) + seed_offset
        return _instantiate(spec, init_args, f"{self.path}: sampler")

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The pruner (default: Optuna's MedianPruner)."""
        spec = self.pruner or {"class_path": "optuna.pruners.MedianPruner"}
        return _instantiate(spec, dict(spec.get("init_args") or {}), f"{self.path}: pruner")


def _instantiate(spec: dict[str, Any], init_args: dict[str, Any], where: str) -> Any:
    class_path = str(spec.get("class_path", ""))
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        return cls(**init_args)
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        raise ConfigurationError(f"{where}.class_path={class_path!r}: cannot be built ({error}).") from None


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Command-line overrides ``--key value`` of ``fit`` (non-strings as JSON, which jsonargparse reads)."""
    args: list[str] = []
    for key, value in values.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def load_search_space(path: Path, config: Path | None = None) -> SearchSpace:
    """Read and check a search space; every problem is a ConfigurationError naming the key."""
    if not path.is_file():
        raise ConfigurationError(f"--search {path}: no such file.")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected a mapping with a 'space' key.")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigurationError(f"{path}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_TOP_KEYS))}.")
    config = config or Path(raw.get("config") or path.parent.parent / f"{path.stem}.yaml")
    if not config.is_file():
        raise ConfigurationError(f"{path}: config={str(config)!r}: no such file.")
    metric = str(raw.get("metric", "eval/return_mean"))
    if not metric.startswith("eval/"):
        raise ConfigurationError(f"{path}: metric={metric!r}: must be an evaluation metric (eval/...), reported as trials run.")
    direction = raw.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise ConfigurationError(f"{path}: direction={direction!r}: allowed values: {', '.join(DIRECTIONS)}.")
    n_trials = raw.get("n_trials", 20)
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigurationError(f"{path}: n_trials={n_trials!r}: must be a positive integer.")
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigurationError(f"{path}: space: expected a mapping of config keys to distributions.")
    parameters = tuple(_parameter(path, key, spec) for key, spec in space.items())
    return SearchSpace(path, config, parameters, metric, direction, n_trials, dict(raw.get("fixed") or {}),
                       dict(raw.get("sampler") or {}), dict(raw.get("pruner") or {}))


def _parameter(path: Path, key: str, spec: Any) -> Parameter:
    where = f"{path}: space.{key}"
    if not isinstance(spec, dict):
        raise ConfigurationError(f"{where}: expected a mapping with 'type' ({', '.join(DISTRIBUTIONS)}).")
    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise ConfigurationError(f"{where}.type={kind!r}: allowed values: {', '.join(DISTRIBUTIONS)}.")
    unknown = sorted(set(spec) - _SPACE_KEYS[kind])
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {unknown[0]!r} for type {kind}; allowed: {', '.join(sorted(_SPACE_KEYS[kind]))}.")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigurationError(f"{where}.choices: expected a non-empty list.")
        return Parameter(key, kind, choices=tuple(choices))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise ConfigurationError(f"{where}: 'low' and 'high' must be numbers.") from None
    if low > high:
        raise ConfigurationError(f"{where}: low={spec['low']} > high={spec['high']}; low must be at most high.")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigurationError(f"{where}: low={spec['low']}: a log distribution needs low > 0.")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigurationError(f"{where}: low and high of an int distribution must be integers.")
    step = spec.get("step")
    if step is not None and log:
        raise ConfigurationError(f"{where}: step and log cannot be combined.")
    return Parameter(key, kind, low, high, log, None if step is None else float(step))
