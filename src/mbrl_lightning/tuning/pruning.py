"""Report a trial's evaluations to Optuna as it trains, and stop it when the pruner says so."""

from __future__ import annotations

from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer


class OptunaPruning(Callback):
    """After every evaluation, report ``metric`` at the env-frame count and stop if the trial is pruned.

    Optuna's own Lightning callback (``optuna-integration``) reports at validation-epoch ends;
    an RL run is one long training epoch that evaluates between batches, so this reports there,
    with real env frames as the step every trial shares.

    Args:
        trial: the Optuna trial this run is.
        metric: an evaluation metric, e.g. ``eval/return_mean``.
    """

    def __init__(self, trial: optuna.Trial, metric: str = "eval/return_mean") -> None:
        self.trial = trial
        self.metric = metric
        self.last_value: float | None = None
        self.pruned_at: int | None = None
        self._evaluations_seen = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Count evaluations from the module's state."""
        self._evaluations_seen = pl_module.evaluations

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Report a new evaluation; ask the trainer to stop when the pruner prunes the trial."""
        if pl_module.evaluations == self._evaluations_seen:
            return
        self._evaluations_seen = pl_module.evaluations
        self.last_value = float(trainer.callback_metrics[self.metric])
        self.trial.report(self.last_value, step=pl_module.frames)
        if pl_module.frames < pl_module.total_frames and self.trial.should_prune():
            self.pruned_at = pl_module.frames
            trainer.should_stop = True
