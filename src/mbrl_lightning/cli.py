"""The ``fit`` command line: LightningCLI with MLflow runs, frame checkpoints and exact resume."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from mbrl_lightning.algorithms import RLModule
from mbrl_lightning.callbacks import EvalVideo, FrameCheckpoint, FrameProgressBar, GracefulInterrupt, TrainingPlots
from mbrl_lightning.cli_errors import condense_parser_error, find_configuration_error
from mbrl_lightning.errors import ConfigurationError, DivergenceError, TrainingInterrupted
from mbrl_lightning.tracking import (
    ResolvedCheckpoint,
    check_reachable,
    flush_metrics,
    make_logger,
    resolve_checkpoint,
    ui_command,
)


class MLflowConfigSaver(SaveConfigCallback):
    """Log the resolved config to the MLflow run: flattened as params and whole as ``config.yaml``."""

    def __init__(self, *args: Any, resumed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resumed = resumed

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Params on a new run; on a resumed run only the config file, since MLflow params are immutable.

        A resumed run is marked RUNNING again: MLflow keeps the status its last stop left
        (FINISHED, KILLED) until this one ends, and the UI and ``compare.py`` would take it as done.
        """
        logger = trainer.logger
        if not isinstance(logger, MLFlowLogger):
            return
        resumed = self.resumed
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        if resumed:
            logger.experiment.update_run(logger.run_id, status="RUNNING")
        else:
            logger.log_hyperparams(_flatten(config))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / ("config_resumed.yaml" if resumed else "config.yaml")
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            logger.experiment.log_artifact(logger.run_id, str(path))


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flat params the MLflow UI can put in columns: ``model.gamma``, ``model.env.env_id``.

    ``init_args`` levels are dropped (they only say "arguments of the class above"); the class
    itself stays as ``<key>.class_path``.
    """
    if isinstance(config, dict):
        flat: dict[str, Any] = {}
        for key, value in config.items():
            flat.update(_flatten(value, prefix if key == "init_args" else f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): config}


class MBRLCLI(LightningCLI):
    """LightningCLI for RL runs: the algorithm comes from the YAML, the logger is an MLflow run.

    Extra top-level keys: ``experiment_name`` and ``run_name`` (MLflow), ``ckpt_path`` (resume from
    a file, ``last`` or ``runs:/<run_id>``), ``torch_threads`` and ``checkpoint.*`` (the frame
    checkpoint schedule).
    """

    def __init__(self, args: Sequence[str] | None = None) -> None:
        quiet_libraries()
        self.resume: ResolvedCheckpoint | None = None
        super().__init__(
            model_class=RLModule,
            subclass_mode_model=True,
            save_config_callback=MLflowConfigSaver,
            save_config_kwargs={"save_to_log_dir": False},
            trainer_defaults={
                "max_epochs": -1,
                "enable_checkpointing": False,
                "num_sanity_val_steps": 0,
                # The start line names what runs; the layer table is one flag away.
                "enable_model_summary": False,
            },
            parser_kwargs={"exit_on_error": False},
            auto_configure_optimizers=False,
            run=False,
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Experiment naming, resume source and the checkpoint schedule."""
        parser.add_argument("--experiment_name", type=str, default="mbrl-lightning", help="MLflow experiment of the run.")
        parser.add_argument("--run_name", type=str | None, default=None, help="MLflow run name (default: <algorithm>-<env_id>-s<seed>).")
        parser.add_argument(
            "--ckpt_path", type=str | None, default=None,
            help="Resume from a checkpoint file, 'last' (newest run of the experiment) or runs:/<run_id>.",
        )
        parser.add_argument(
            "--torch_threads", type=int, default=1,
            help="CPU threads for tensor math; 1 is fastest for the small networks of RL, 0 keeps torch's default.",
        )
        parser.add_lightning_class_args(FrameCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EvalVideo, "video")
        parser.add_lightning_class_args(TrainingPlots, "plots")

    def before_instantiate_classes(self) -> None:
        """Check the tracking store, set CPU threads, and find the checkpoint to resume from."""
        check_reachable()
        if self.config.torch_threads < 0:
            raise ConfigurationError(f"--torch_threads={self.config.torch_threads}: must be 0 (torch default) or more.")
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        ckpt_path = self.config.get("ckpt_path")
        if ckpt_path:
            checkpoint_root = Path(self.config.trainer.default_root_dir or ".") / "checkpoints"
            self.resume = resolve_checkpoint(ckpt_path, self.config.experiment_name, checkpoint_root)
        self.save_config_kwargs["resumed"] = self.resume is not None
        if self.config.trainer.strategy == "ddp":
            # Each backward of an RL update reaches only part of the module (the world model, the
            # policy, the curiosity net), which plain DDP refuses; this mode finds the used parameters.
            self.config.trainer.strategy = "ddp_find_unused_parameters_true"
        self.trainer_defaults["callbacks"] = [GracefulInterrupt()]
        if self.config.trainer.enable_progress_bar is not False:
            self.trainer_defaults["callbacks"].append(FrameProgressBar())

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, logging to a new MLflow run or to the resumed checkpoint's run."""
        if self.resume is not None:
            self.resume.check_matches(type(self.model).__name__, self.model.env.env_id)
        tags = {
            "algorithm": type(self.model).__name__,
            "env_id": self.model.env.env_id,
            "seed": str(self.config.get("seed_everything")),
        }
        logger = make_logger(
            experiment_name=self.config.experiment_name,
            run_name=self.config.run_name or f"{tags['algorithm']}-{tags['env_id']}-s{tags['seed']}",
            run_id=self.resume.run_id if self.resume else None,
            tags=tags,
        )
        return super().instantiate_trainer(logger=logger, **kwargs)

    @property
    def frame_checkpoint(self) -> FrameCheckpoint:
        """The run's checkpoint callback; ``last_path`` is the newest checkpoint written."""
        return next(c for c in self.trainer.callbacks if isinstance(c, FrameCheckpoint))

    def start_line(self) -> str:
        """What runs where, and how to watch it: algorithm, env, seed, device, precision, MLflow run."""
        trainer, model = self.trainer, self.model
        logger = trainer.logger
        resumed = f", resumed from {self.resume.path}" if self.resume else ""
        return (
            f"{type(model).__name__} on {model.env.env_id} (seed {self.config.get('seed_everything')}) | "
            f"{trainer.strategy.root_device} | precision {trainer.precision} | "
            f"MLflow run {getattr(logger, 'run_id', None)}{resumed} | view: {ui_command()}"
        )

    def end_line(self) -> str:
        """The result: best evaluation, checkpoints and the run id."""
        checkpoint = self.frame_checkpoint
        best = (
            f"best eval return {checkpoint.best_return:.4g} at frame {checkpoint.best_frame:,} ({checkpoint.best_path})"
            if checkpoint.best_return is not None
            else "no evaluation"
        )
        return f"Done at frame {self.model.frames:,} | {best} | Last checkpoint: {checkpoint.last_path}"

    def fit(self) -> None:
        """Train, or resume from the resolved checkpoint."""
        print(self.start_line(), flush=True)
        ckpt_path = str(self.resume.path) if self.resume else None
        try:
            self.trainer.fit(self.model, ckpt_path=ckpt_path, weights_only=True)
        finally:
            flush_metrics()


def quiet_libraries() -> None:
    """Keep the terminal for the progress bar: library chatter that users cannot act on goes."""
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    # Downloading a checkpoint or config is quick; its progress bars would push the start line away.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Creating the embedded store's tables is routine, not news.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # Lightning's start-up notes (hardware lines, seed, advertisements) say what the start line says.
    chatter = ("💡", "GPU available", "TPU available", "HPU available", "Seed set to")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).addFilter(lambda record: not str(record.msg).startswith(chatter))
    warnings.filterwarnings("ignore", message=".*dataloader_iter.*experimental.*")
    warnings.filterwarnings("ignore", message=".*Nested TransformedEnvs.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Tabular learners have no optimizer, which Lightning allows under manual optimisation.
    warnings.filterwarnings("ignore", message=".*configure_optimizers.*returned `None`.*")


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/fit.py``; returns the process exit code."""
    try:
        cli = MBRLCLI(args)
    except ArgumentError as error:
        print(f"error: {condense_parser_error(str(error))}", file=sys.stderr)
        return 2
    except Exception as error:
        configuration_error = find_configuration_error(error)
        if configuration_error is None:
            raise
        print(f"error: {configuration_error}", file=sys.stderr)
        return 2
    try:
        cli.fit()
    except TrainingInterrupted as interrupted:
        print(f"\n{interrupted}", file=sys.stderr)
        return 128 + interrupted.signal_number
    except DivergenceError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    if not cli.trainer.is_global_zero:
        return 0  # under DDP, rank 0 owns the MLflow run and the checkpoints
    logger = cli.trainer.logger
    run_id = getattr(logger, "run_id", None)
    print(cli.end_line())
    print(f"MLflow run: {run_id} (experiment {cli.config.experiment_name!r}, store {getattr(logger, '_tracking_uri', '')})")
    return 0
