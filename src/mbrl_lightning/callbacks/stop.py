"""Stop a run once its evaluation return reaches a target."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


class StopAtReturn(Callback):
    """End training after the first evaluation whose ``eval/return_mean`` reaches ``threshold``.

    Lightning's EarlyStopping checks at epoch ends; an RL run is one long epoch, so this checks
    after every batch that ran an evaluation.

    Args:
        threshold: the return that counts as solved (e.g. 475 for CartPole-v1).
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: object) -> None:
        """Ask the trainer to stop when the latest evaluation reached the threshold."""
        value = trainer.callback_metrics.get("eval/return_mean")
        if value is not None and float(value) >= self.threshold:
            trainer.should_stop = True
