"""Stop a run once its evaluation return reaches a target."""

from __future__ import annotations

import math
from typing import Any

import torch
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
        """Ask the trainer to stop when the latest evaluation reached the threshold (on any DDP rank)."""
        value = trainer.callback_metrics.get("eval/return_mean")
        best = float(value) if value is not None else -math.inf
        if trainer.world_size > 1:
            # DDP ranks must stop at the same batch, or one waits for the other forever: the best
            # return of any rank decides for all, also on a rank that holds none of its own.
            best = float(trainer.strategy.reduce(torch.tensor(best, device=pl_module.device), reduce_op="max"))
        if best >= self.threshold:
            self.reached_return, self.reached_frame = best, pl_module.frames
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Whether and where the target was reached, so a resume can tell that the run is finished."""
        return {"threshold": self.threshold, "reached_return": self.reached_return, "reached_frame": self.reached_frame}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the threshold stays the one configured now)."""
        self.reached_return = state_dict.get("reached_return")
        self.reached_frame = state_dict.get("reached_frame")
