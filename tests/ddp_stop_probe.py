"""A callback the 2-process stop test loads: one rank's own return is kept below the stop threshold."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class LowReturnOnRank(Callback):
    """On rank ``rank``, replace each evaluation's ``eval/return_mean`` by ``value``; write ``rank<k>.json`` at the end.

    Listed before :class:`~mbrl_lightning.callbacks.StopAtReturn`, it makes that rank's own
    return miss the threshold that the other rank's return reaches.

    Args:
        folder: where the per-rank reports go.
        rank: the rank whose own return is replaced.
        value: the return it sees instead.
    """

    def __init__(self, folder: str, rank: int = 1, value: float = -1.0) -> None:
        self.folder, self.rank, self.value = Path(folder), rank, value
        self.own_returns: list[float] = []
        self._seen = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: object) -> None:
        """After a batch that evaluated, keep the real return and, on ``rank``, put ``value`` in its place."""
        if pl_module.evaluations == self._seen:
            return
        self._seen = pl_module.evaluations
        self.own_returns.append(float(trainer.callback_metrics["eval/return_mean"]))
        if trainer.global_rank == self.rank:
            trainer.callback_metrics["eval/return_mean"] = torch.tensor(self.value)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write where this rank stopped and what its stop callback recorded."""
        (stop,) = [c for c in trainer.callbacks if type(c).__name__ == "StopAtReturn"]
        report = {"rank": trainer.global_rank, "frames": pl_module.frames, "evaluations": pl_module.evaluations,
                  "own_returns": self.own_returns, "seen_return": float(trainer.callback_metrics["eval/return_mean"]),
                  "reached_frame": stop.reached_frame, "reached_return": stop.reached_return}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
