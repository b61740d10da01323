"""Rebuild a trained module from a checkpoint and the resolved config of its run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml
from jsonargparse import ArgumentParser

from mbrl_lightning.algorithms import RLModule
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import ResolvedCheckpoint, tracking_uri

CONFIG_ARTIFACT = "config.yaml"


def run_config(run_id: str) -> dict[str, Any]:
    """The resolved config a run was started with (its ``config.yaml`` artifact)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{run_id}/{CONFIG_ARTIFACT}", dst_path=folder, tracking_uri=tracking_uri()
            )
        except Exception as error:  # MLflow raises several types for a missing run or artifact
            raise ConfigurationError(
                f"run {run_id} has no {CONFIG_ARTIFACT} in {tracking_uri()} ({type(error).__name__}); pass --config."
            ) from None
        return yaml.safe_load(Path(local).read_text())


def build_module(config: dict[str, Any]) -> RLModule:
    """Instantiate the ``model`` section of a config (``class_path`` / ``init_args``) as fit.py does."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(RLModule, "model", required=True)
    parsed = parser.parse_object({"model": config["model"]})
    return parser.instantiate_classes(parsed).model


def load_module(checkpoint: ResolvedCheckpoint, config_path: str | None = None) -> tuple[RLModule, dict[str, Any]]:
    """The module of ``checkpoint`` with its weights, and the checkpoint's extras (frames, seed, ...).

    The config comes from ``config_path`` or else from the checkpoint's MLflow run.
    """
    if config_path is not None:
        config = yaml.safe_load(Path(config_path).read_text())
    elif checkpoint.run_id is not None:
        config = run_config(checkpoint.run_id)
    else:
        raise ConfigurationError(f"--ckpt_path {checkpoint.path}: the checkpoint names no MLflow run; pass --config.")
    module = build_module(config)
    checkpoint.check_matches(type(module).__name__, module.env.env_id)
    state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    module.eval()
    return module, state.get("mbrl", {})
