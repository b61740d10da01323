"""A callback the DDP test loads into a subprocess run: each rank writes what it saw to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RankReport(Callback):
    """At the end of training, write ``rank<k>.json`` with the rank's frames, buffer and weights.

    Args:
        folder: where the files go.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the global frame count, the local replay shard and a checksum of the weights."""
        stored = pl_module.replay_buffer[:]
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "frames": pl_module.frames,
            "buffer_size": len(pl_module.replay_buffer),
            "buffer_observation_sum": float(stored["observation"].double().sum()),
            "weights": weights.double().tolist(),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
