"""Stop a run once its evaluation return reaches a target."""

from __future__ import annotations

from typing import Any

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
        self.reached_return: float | None = None
        self.reached_frame: int | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: object) -> None:
        """Ask the trainer to stop when the latest evaluation reached the threshold."""
        value = trainer.callback_metrics.get("eval/return_mean")
        reached = value is not None and float(value) >= self.threshold
        if trainer.world_size > 1:
            # DDP ranks must stop at the same batch, or one waits for the other forever.
            reached = trainer.strategy.reduce_boolean_decision(reached, all=False)
        if reached:
            # A rank stops when any rank reached the threshold, even if it holds no return itself.
            if value is not None:
                self.reached_return, self.reached_frame = float(value), pl_module.frames
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Whether and where the target was reached, so a resume can tell that the run is finished."""
        return {"threshold": self.threshold, "reached_return": self.reached_return, "reached_frame": self.reached_frame}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the threshold stays the one configured now)."""
        self.reached_return = state_dict.get("reached_return")
        self.reached_frame = state_dict.get("reached_frame")
