"""A callback the DDP tests load into a subprocess run: each rank writes what it saw to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RankReport(Callback):
    """At the end of training, write ``rank<k>.json`` with the rank's frames, buffers, weights and steps.

    Args:
        folder: where the files go.
        save_at_frames: also write ``<folder>/mid.ckpt`` (every rank takes part) when the global
            frame count reaches this (0: never), the checkpoint a run interrupted there leaves.
    """

    def __init__(self, folder: str, save_at_frames: int = 0) -> None:
        self.folder = Path(folder)
        self.save_at_frames = save_at_frames
        self.updates: list[dict[str, int]] = []
        self.snapshots: dict[str, dict] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Snapshot the rank's state; for on-policy learners, record each update's samples and steps."""
        self.snapshots["start"] = _rank_state(pl_module)
        if not hasattr(pl_module, "optimize"):
            return
        optimize, loss_terms = pl_module.optimize, pl_module.weighted_loss_terms
        steps = [0]

        def counted_loss_terms(minibatch):
            steps[0] += 1
            return loss_terms(minibatch)

        def recorded_optimize(samples):
            steps[0] = 0
            metrics = optimize(samples)
            self.updates.append({"samples": samples.numel(), "steps": steps[0]})
            return metrics

        pl_module.weighted_loss_terms = counted_loss_terms
        pl_module.optimize = recorded_optimize

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_) -> None:
        """Write the mid-run checkpoint when due."""
        if self.save_at_frames and pl_module.frames == self.save_at_frames:
            trainer.save_checkpoint(self.folder / "mid.ckpt", weights_only=False)
            self.snapshots["saved"] = _rank_state(pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the global frame count, the local replay shards and the weights."""
        buffers = {}
        for name, buffer in pl_module.checkpointed_buffers().items():
            stored = buffer[:]
            buffers[name] = {"size": len(buffer), "observation_sum": float(stored["observation"].double().sum())}
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        # Per part, so a difference points at what differs: each child's weights and running
        # statistics, the optimizers' moments, the rank's confidence and beta where it has them.
        parts = {name: float(sum(t.detach().double().sum() for t in [*child.parameters(), *child.buffers()]))
                 for name, child in pl_module.named_children()}
        optimizers = [float(sum(v.double().sum() for state in o.state.values() for v in state.values()
                                if torch.is_tensor(v))) for o in trainer.optimizers]
        learner = getattr(pl_module, "model_learner", None)
        scalars = {"confidence": getattr(learner, "confidence", None),
                   "beta": getattr(getattr(pl_module, "beta", None), "value", None)}
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "frames": pl_module.frames,
            "episodes": pl_module.episodes,
            "buffers": buffers,
            "weights": weights.double().tolist(),
            "parts": parts,
            "optimizers": optimizers,
            "scalars": scalars,
            "updates": self.updates,
            "snapshots": self.snapshots,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def _rank_state(module: LightningModule) -> dict:
    """Checksums of what is local to a rank: generators, replay shards, episodes in flight."""
    stream = module._stream.state_dict() if module._stream is not None else {}
    carrier = stream.get("carrier", {}).get("observation")
    return {
        "torch_rng": int(torch.get_rng_state().long().sum()),
        "buffers": {name: float(buffer[:]["observation"].double().sum()) if len(buffer) else 0.0
                    for name, buffer in module.checkpointed_buffers().items()},
        "carrier": float(carrier.double().sum()) if carrier is not None else None,
    }
