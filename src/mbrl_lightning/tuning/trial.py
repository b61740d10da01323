"""One Optuna trial: a ``fit`` run of the config with the trial's values, nested under the study's MLflow run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from lightning.pytorch import Trainer

from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.cli_errors import find_configuration_error
from mbrl_lightning.errors import ConfigurationError, DivergenceError
from mbrl_lightning.tuning.pruning import OptunaPruning
from mbrl_lightning.tuning.search_space import SearchSpace, as_overrides

STUDY_TAG = "optuna.study"
TRIAL_TAG = "optuna.trial"
STATE_TAG = "optuna.state"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests the run under this one


class TrialCLI(MBRLCLI):
    """``fit`` with the trial's tags on its MLflow run and the pruning callback on its trainer."""

    def __init__(self, args: Sequence[str], trial: optuna.Trial, tags: dict[str, str], metric: str) -> None:
        self.pruning = OptunaPruning(trial, metric)
        self.trial_tags = tags
        super().__init__(args)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The ``fit`` trainer, its run tagged as the trial and nested under the study's run."""
        trainer = super().instantiate_trainer(**kwargs)
        logger = trainer.logger
        for key, value in self.trial_tags.items():
            logger.experiment.set_tag(logger.run_id, key, value)
        trainer.callbacks.append(self.pruning)
        return trainer


@dataclass
class TrialRunner:
    """The objective of a study: train the config with the trial's values, return its last evaluation.

    Args:
        space: the search space (config, fixed overrides, metric).
        study_name: tagged on every trial's MLflow run.
        experiment_name: MLflow experiment of the study's runs.
        parent_run_id: the study's MLflow run, which the trials' runs nest under.
        extra_args: further ``fit`` overrides every trial shares (from the command line).
    """

    space: SearchSpace
    study_name: str
    experiment_name: str
    parent_run_id: str
    extra_args: list[str] = field(default_factory=list)

    def base_args(self) -> list[str]:
        """``fit`` arguments every trial shares: the config, the fixed and the command-line overrides."""
        return ["--config", str(self.space.config), *as_overrides(self.space.fixed), *self.extra_args]

    def __call__(self, trial: optuna.Trial) -> float:
        """Run the trial; pruned trials raise ``TrialPruned``, diverged ones ``DivergenceError``."""
        values = self.space.suggest(trial)
        trial.set_user_attr("overrides", values)
        args = [*self.base_args(), *as_overrides(values), "--experiment_name", self.experiment_name,
                "--run_name", f"{self.study_name}-trial-{trial.number}", "--trainer.enable_progress_bar", "false"]
        tags = {STUDY_TAG: self.study_name, TRIAL_TAG: str(trial.number), PARENT_TAG: self.parent_run_id}
        try:
            cli = TrialCLI(args, trial, tags, self.space.metric)
        except Exception as error:
            configuration_error = find_configuration_error(error)
            if configuration_error is None:
                raise
            trial.set_user_attr("failure", str(configuration_error))
            raise configuration_error from None
        run_id = cli.trainer.logger.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        client = cli.trainer.logger.experiment  # on a server, the client that keeps calls while it is away
        try:
            cli.fit()
        except DivergenceError as error:
            # Lightning has marked the run FAILED; the study's worker catches this and goes on.
            trial.set_user_attr("failure", str(error))
            client.set_tag(run_id, STATE_TAG, "FAIL")
            raise
        pruning = cli.pruning
        if pruning.pruned_at is not None:
            client.set_tag(run_id, STATE_TAG, "PRUNED")
            # MLflow has no "pruned" status; KILLED keeps the stopped run out of finished-run comparisons.
            client.set_terminated(run_id, status="KILLED")
            raise optuna.TrialPruned(f"pruned at frame {pruning.pruned_at} with {self.space.metric}={pruning.last_value}")
        if pruning.last_value is None:
            raise ConfigurationError(f"trial {trial.number}: no {self.space.metric} was logged; set model.eval_every_frames > 0.")
        client.set_tag(run_id, STATE_TAG, "COMPLETE")
        return pruning.last_value
