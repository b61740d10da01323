"""Resume as the run was configured: its recorded config is the base, the command line changes it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import yaml

from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import ResolvedCheckpoint, tracking_uri

# Newest first: each resume records the config it ran with as ``config_resumed.yaml``.
CONFIG_ARTIFACTS = ("config_resumed.yaml", "config.yaml")
# Keys that say how to start, not what the run is; a difference there is no change of the run.
NOT_COMPARED = ("ckpt_path", "config")


class RunFinished(Exception):
    """The run asked to resume has already ended; the message says how to extend it."""


def option_value(argv: Sequence[str], option: str) -> str | None:
    """The last value given to ``option`` (``--opt VALUE`` or ``--opt=VALUE``) in ``argv``."""
    value = None
    for index, item in enumerate(argv):
        if item == option and index + 1 < len(argv):
            value = argv[index + 1]
        elif item.startswith(option + "="):
            value = item.split("=", 1)[1]
    return value


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value."""
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            kept.append(item)
    return kept


def read_yaml(path: str) -> dict[str, Any]:
    """A config file as a dict; a syntax error is one line naming the file, line and column."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigurationError(f"--config {path}: cannot be read ({error.strerror}).") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigurationError(f"--config {where}: YAML syntax error: {problem}.") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigurationError(f"--config {path}: expected a mapping of keys, got a {type(loaded).__name__}.")
    return loaded or {}


def recorded_config(run_id: str) -> dict[str, Any] | None:
    """The newest resolved config the run was trained with, or None when the run recorded none."""
    for name in CONFIG_ARTIFACTS:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{run_id}/{name}", tracking_uri=tracking_uri()
            )
        except Exception:  # MLflow raises several types for a missing run or artifact
            continue
        return yaml.safe_load(Path(local).read_text())
    return None


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flat keys the MLflow UI can put in columns: ``model.gamma``, ``model.env.env_id``; lists stay whole.

    ``init_args`` levels are dropped (they only say "arguments of the class above"); the class
    itself stays as ``<key>.class_path``.
    """
    if isinstance(config, dict):
        flat: dict[str, Any] = {}
        for key, value in config.items():
            flat.update(flatten(value, prefix if key == "init_args" else f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): config}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each key whose value differs between two configs."""
    flat_before, flat_after = flatten(before), flatten(after)
    lines = []
    for key in dict.fromkeys([*flat_before, *flat_after]):
        if key.split(".")[0] in NOT_COMPARED:
            continue
        old, new = flat_before.get(key), flat_after.get(key)
        if old != new:
            lines.append(f"{key}: {_short(old)} -> {_short(new)}")
    return lines


def _short(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return text if len(text) <= 80 else text[:77] + "..."


def model_identity(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """(algorithm class name, env id) that a config builds, as far as its ``model`` section says."""
    model = config.get("model") or {}
    class_path = model.get("class_path") if isinstance(model, dict) else None
    env = ((model.get("init_args") or {}).get("env") or {}) if isinstance(model, dict) else {}
    env_id = (env.get("init_args") or {}).get("env_id") if isinstance(env, dict) else None
    return (class_path.rsplit(".", 1)[-1] if class_path else None), env_id


def resume_command(checkpoint: str, *extra: str) -> str:
    """A command that resumes from ``checkpoint`` when pasted into the shell it ran in."""
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith("fit.py") else "scripts/fit.py"
    executable = Path(sys.executable)
    # Relative inside the working folder (``.venv/bin/python``), else whole: both run the same Python.
    python = str(executable.relative_to(Path.cwd())) if executable.is_relative_to(Path.cwd()) else str(executable)
    return shlex.join([python, script, "--ckpt_path", checkpoint, *extra])


def finished_message(
    checkpoint: ResolvedCheckpoint, total_frames: int, target: tuple[float, float] | None
) -> str | None:
    """Why the run of ``checkpoint`` has nothing left to do and how to extend it; None if it has."""
    frames = checkpoint.frames or 0
    source = f"runs:/{checkpoint.run_id}" if checkpoint.run_id else str(checkpoint.path)
    name = f"run {checkpoint.run_id}" if checkpoint.run_id else f"checkpoint {checkpoint.path}"
    if target is not None:
        threshold, reached = target
        return (
            f"{name} is finished: its evaluation return {reached:.4g} reached the StopAtReturn threshold "
            f"{threshold:g} at frame {frames:,}, so a resume would stop again at its next evaluation. To train on "
            f"without the stop (and the config's other callbacks): {resume_command(source, '--trainer.callbacks', '[]')}"
        )
    if frames >= total_frames:
        return (
            f"{name} is finished: it has spent its budget of {total_frames:,} frames (checkpoint at frame "
            f"{frames:,}). To train longer, give a larger budget: "
            f"{resume_command(source, '--model.total_frames', str(max(2 * total_frames, frames + 1)))}"
        )
    return None
