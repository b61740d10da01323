"""The ``fit`` command line: LightningCLI with MLflow runs, frame checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
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
from mbrl_lightning.callbacks import (
    EvalVideo,
    FrameCheckpoint,
    FrameProgressBar,
    FrameProgressLines,
    GracefulInterrupt,
    StopAtReturn,
    TrainingPlots,
)
from mbrl_lightning.callbacks.progress import draws_bars
from mbrl_lightning.cli_errors import condense_parser_error, find_configuration_error
from mbrl_lightning.cli_help import import_algorithms, print_help
from mbrl_lightning.cli_resume import (
    RunFinished,
    differences,
    finished_message,
    flatten,
    model_identity,
    option_value,
    read_yaml,
    recorded_config,
    resume_command,
    without_option,
)
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
            logger.log_hyperparams(flatten(config))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / ("config_resumed.yaml" if resumed else "config.yaml")
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            logger.experiment.log_artifact(logger.run_id, str(path))


# Trainer options that apply to an RL run; the rest (epochs, batch limits, validation loops,
# gradient accumulation, Lightning's own checkpointing and logger) are fixed or have no meaning
# here, and leaving them out keeps ``--help`` to what a user can set.
TRAINER_OPTIONS = (
    "accelerator", "strategy", "devices", "num_nodes", "precision", "callbacks", "enable_progress_bar",
    "enable_model_summary", "deterministic", "benchmark", "profiler", "detect_anomaly", "plugins", "default_root_dir",
)
FIXED_TRAINER_SETTINGS = {"max_epochs": -1, "enable_checkpointing": False, "num_sanity_val_steps": 0}


class MBRLCLI(LightningCLI):
    """LightningCLI for RL runs: the algorithm comes from the YAML, the logger is an MLflow run.

    Extra top-level keys: ``experiment_name`` and ``run_name`` (MLflow), ``ckpt_path`` (resume from
    a file, ``last`` or ``runs:/<run_id>``), ``torch_threads`` and ``checkpoint.*`` (the frame
    checkpoint schedule).
    """

    def __init__(self, args: Sequence[str] | None = None) -> None:
        quiet_libraries()
        import_algorithms()
        self.resume: ResolvedCheckpoint | None = None
        self.resume_changes: list[str] = []
        self.resume_kept: list[str] = []
        super().__init__(
            model_class=RLModule,
            subclass_mode_model=True,
            save_config_callback=MLflowConfigSaver,
            save_config_kwargs={"save_to_log_dir": False},
            parser_kwargs={"exit_on_error": False, "description": "Train an mbrl-lightning algorithm: "
                           "python scripts/fit.py --config conf/<experiment>.yaml [--<key> VALUE ...]"},
            auto_configure_optimizers=False,
            run=False,
            args=args,
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The trainer options that apply (:data:`TRAINER_OPTIONS`) and the algorithm; no DataModule."""
        skipped = set(inspect.signature(Trainer.__init__).parameters) - {"self", *TRAINER_OPTIONS}
        parser.add_class_arguments(Trainer, "trainer", fail_untyped=False, instantiate=False, sub_configs=True, skip=skipped)
        # The start line names what runs; the layer table is one flag away.
        parser.set_defaults({"trainer.enable_model_summary": False})
        parser.add_lightning_class_args(RLModule, "model", subclass_mode=True)

    def parse_arguments(self, parser: LightningArgumentParser, args: Sequence[str] | None) -> None:
        """Parse the command line; to resume, on top of the config the run was trained with.

        A resumed run keeps everything it was configured with, overrides given at its start
        included; only keys given on this command line change it (``--config`` files given
        again are read for the experiment name and checked against the run, not applied).
        """
        argv = list(sys.argv[1:] if args is None else args)
        config_path = option_value(argv, "--config")
        file_config = read_yaml(config_path) if config_path else {}
        ckpt_path = option_value(argv, "--ckpt_path")
        recorded = None
        if ckpt_path:
            check_reachable()
            experiment = option_value(argv, "--experiment_name") or file_config.get("experiment_name") or "mbrl-lightning"
            root = option_value(argv, "--trainer.default_root_dir") or (file_config.get("trainer") or {}).get("default_root_dir")
            self.resume = resolve_checkpoint(ckpt_path, experiment, Path(root or ".") / "checkpoints")
            if config_path:
                self.resume.check_matches(*model_identity(file_config))
            recorded = recorded_config(self.resume.run_id) if self.resume.run_id else None
        if recorded is None:
            self.config = self._parse(parser, argv)
            return
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder) / "recorded_config.yaml"
            base.write_text(yaml.safe_dump(recorded, sort_keys=False))
            self.config = self._parse(parser, ["--config", str(base), *without_option(argv, "--config")])
        resolved = yaml.safe_load(parser.dump(self.config, skip_none=False))
        self.resume_changes = differences(recorded, resolved)
        if config_path:
            given = yaml.safe_load(parser.dump(self._parse(parser, without_option(argv, "--ckpt_path")), skip_none=False))
            self.resume_kept = differences(given, resolved)
        self._refuse_finished_run()

    @staticmethod
    def _parse(parser: LightningArgumentParser, argv: list[str]) -> Any:
        """``parser.parse_args`` whose errors on top-level flags say which flag was meant."""
        try:
            return parser.parse_args(argv)
        except ArgumentError as error:
            options = [option for option in parser._option_string_actions if option.startswith("--")]
            raise ConfigurationError(condense_parser_error(str(error), options)) from None

    def _refuse_finished_run(self) -> None:
        """Raise RunFinished when the resumed run has spent its budget or reached its StopAtReturn target."""
        assert self.resume is not None
        target = None
        if self.resume.reached_target is not None:
            threshold, reached = self.resume.reached_target
            stops = [c for c in self.config.trainer.callbacks or [] if c.class_path.endswith("StopAtReturn")]
            if any(c.init_args.threshold <= reached for c in stops):
                target = (threshold, reached)
        message = finished_message(self.resume, self.config.model.init_args.total_frames, target)
        if message is not None:
            raise RunFinished(message)

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
        self.save_config_kwargs["resumed"] = self.resume is not None
        if self.config.trainer.strategy == "ddp":
            # Each backward of an RL update reaches only part of the module (the world model, the
            # policy, the curiosity net), which plain DDP refuses; this mode finds the used parameters.
            self.config.trainer.strategy = "ddp_find_unused_parameters_true"
        self.trainer_defaults["callbacks"] = [GracefulInterrupt()]
        if self.config.trainer.enable_progress_bar is not False:
            # A redrawn bar needs a terminal; in a file or pipe it would be one line of kilobytes.
            progress = FrameProgressBar() if draws_bars(sys.stdout) else FrameProgressLines()
            self.trainer_defaults["callbacks"].append(progress)

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
        return super().instantiate_trainer(logger=logger, **FIXED_TRAINER_SETTINGS, **kwargs)

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

    def resume_lines(self) -> list[str]:
        """What a resume changed in the run's config, and what it kept although ``--config`` says otherwise."""
        if self.resume is None:
            return []
        changed = "; ".join(self.resume_changes) if self.resume_changes else "none"
        lines = [f"Resuming with the run's recorded config; changed on the command line: {changed}"]
        if self.resume_kept:
            lines.append(f"Kept from the run (differs in --config): {'; '.join(self.resume_kept)}")
        return lines

    def end_line(self) -> str:
        """The result: final and best evaluation, checkpoints and the run id."""
        checkpoint = self.frame_checkpoint
        unit = "agent step" if getattr(self.model.env, "frame_skip", 1) > 1 else "frame"
        if checkpoint.final_return is None:
            evaluations = "no evaluation"
        else:
            evaluations = f"final eval return {checkpoint.final_return:.4g} at {unit} {checkpoint.final_frame:,}"
            if checkpoint.best_return is not None:
                evaluations += (f" | best {checkpoint.best_return:.4g} at {unit} {checkpoint.best_frame:,} "
                                f"({checkpoint.best_path})")
        return f"Done at {unit} {self.model.frames:,} | {evaluations} | Last checkpoint: {checkpoint.last_path}"

    def fit(self) -> None:
        """Train, or resume from the resolved checkpoint."""
        print(self.start_line(), flush=True)
        for line in self.resume_lines():
            print(line, flush=True)
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
    # Restore notices repeat the start line's "resumed from"; a new experiment is routine.
    chatter = ("💡", "GPU available", "TPU available", "HPU available", "Seed set to", "Restoring states from",
               "Restored all states from", "Experiment with name")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed",
                 "lightning.pytorch.loggers.mlflow"):
        logging.getLogger(name).addFilter(lambda record: not str(record.msg).startswith(chatter))
    # ALE prints its version banner on every emulator start unless told to log errors only.
    with contextlib.suppress(ImportError):
        import ale_py

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    warnings.filterwarnings("ignore", message=".*dataloader_iter.*experimental.*")
    # A resume that drops a callback (``--trainer.callbacks '[]'`` past a StopAtReturn) does so on purpose.
    warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
    warnings.filterwarnings("ignore", message=".*Nested TransformedEnvs.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Tabular learners have no optimizer, which Lightning allows under manual optimisation.
    warnings.filterwarnings("ignore", message=".*configure_optimizers.*returned `None`.*")


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/fit.py``; returns the process exit code."""
    argv = list(sys.argv[1:] if args is None else args)
    # Ctrl-C outside the training loop (env probes, creating the MLflow run, the last flush) comes
    # as KeyboardInterrupt, since the graceful handler is installed only while training: one line
    # saying what is on disk, not a traceback.
    try:
        if "-h" in argv or "--help" in argv:
            return print_help(MBRLCLI, argv)
        cli = MBRLCLI(argv)
    except KeyboardInterrupt:
        print("\ninterrupted before a checkpoint was written; nothing to resume", file=sys.stderr)
        return 128 + signal.SIGINT
    except RunFinished as finished:
        print(finished)
        return 0
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
    except KeyboardInterrupt:
        last = next((c.last_path for c in cli.trainer.callbacks if isinstance(c, FrameCheckpoint)), None)
        if last is None:
            print("\ninterrupted before a checkpoint was written; nothing to resume", file=sys.stderr)
        else:
            print(f"\ninterrupted; last checkpoint {last}\nresume with: {resume_command(str(last))}", file=sys.stderr)
        return 128 + signal.SIGINT
    except TrainingInterrupted as interrupted:
        saved = f"checkpoint {interrupted.checkpoint}" if interrupted.checkpoint else "no checkpoint (none configured)"
        print(f"\ninterrupted by {interrupted.signal_name} at frame {interrupted.frames:,}; {saved}", file=sys.stderr)
        if interrupted.checkpoint:
            print(f"resume with: {resume_command(interrupted.checkpoint)}", file=sys.stderr)
        return 128 + interrupted.signal_number
    except DivergenceError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    except ConfigurationError as error:  # found once the trainer is known (a batch that does not split over DDP ranks)
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not cli.trainer.is_global_zero:
        return 0  # under DDP, rank 0 owns the MLflow run and the checkpoints
    logger = cli.trainer.logger
    run_id = getattr(logger, "run_id", None)
    print(cli.end_line())
    print(f"MLflow run: {run_id} (experiment {cli.config.experiment_name!r}, store {getattr(logger, '_tracking_uri', '')})")
    return 0
