"""Training a world model to convergence on its held-out loss, each ensemble member stopped at its best.

MBPO's model training (Janner et al. 2019, ``mbpo/models/bnn.py``): epochs over all training
transitions; after each epoch every member's held-out error is measured and the member's weights
are kept when it improved by more than ``min_improvement`` (relative); training stops once no
member has improved for more than ``patience`` epochs, and every member goes back to its kept
weights. The project's ensemble trains as one batched network, so the per-member weights are the
member's slices of the stacked ``EnsembleLinear`` layers; what is shared between members (the
log-variance bounds) stays as trained, as in MBPO.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from tensordict import TensorDictBase

from mbrl_lightning.distributed import gather_from_ranks, process_count
from mbrl_lightning.nets.ensemble import EnsembleLinear
from mbrl_lightning.world_models.base import WorldModel
from mbrl_lightning.world_models.training import world_model_step


def member_parameters(model: WorldModel) -> list[torch.nn.Parameter]:
    """Parameters whose first dimension is the ensemble member (all of them for a single model)."""
    if model.num_members == 1:
        return list(model.parameters())
    return [parameter for module in model.modules() if isinstance(module, EnsembleLinear)
            for parameter in module.parameters()]


class MemberSnapshots:
    """The best weights of every member so far, and the held-out error they reached."""

    def __init__(self, model: WorldModel, min_improvement: float) -> None:
        self.parameters = member_parameters(model)
        self.single = model.num_members == 1
        self.min_improvement = min_improvement
        self.best = torch.full((model.num_members,), float("inf"))
        self.kept = [parameter.detach().clone() for parameter in self.parameters]

    @torch.no_grad()
    def offer(self, errors: torch.Tensor) -> bool:
        """Keep the members whose ``errors`` improved on their best by more than ``min_improvement``; any kept?"""
        errors = errors.detach().cpu()
        improved = (self.best - errors) / self.best > self.min_improvement
        improved |= self.best.isinf() & errors.isfinite()
        if not improved.any():
            return False
        self.best = torch.where(improved, errors, self.best)
        rows = improved.to(self.kept[0].device) if not self.single else None
        for kept, parameter in zip(self.kept, self.parameters):
            if self.single:
                kept.copy_(parameter)
            else:
                kept[rows] = parameter[rows]
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put every member's kept weights back."""
        for kept, parameter in zip(self.kept, self.parameters):
            parameter.copy_(kept)


def train_until_converged(
    model: WorldModel, training: TensorDictBase, held_out: TensorDictBase, batch_size: int,
    optimize: Callable[[torch.Tensor], None], patience: int, max_epochs: int | None = None,
    min_improvement: float = 0.01,
) -> dict[str, float]:
    """Epochs over ``training`` until the held-out error stops improving; return the last step's terms and the epochs."""
    snapshots = MemberSnapshots(model, min_improvement)
    metrics: dict[str, float] = {}
    epochs_since_update = 0
    epochs = 0
    size = training.shape[0]
    # Under DDP each rank trains on its own shard with its share of the batch, takes as many steps
    # per epoch as the rank with the most data, and judges improvement on the ranks' mean held-out
    # error: every rank then stops after the same epoch and keeps the same weights.
    batch_size = max(batch_size // process_count(), 1)
    steps = int(gather_from_ranks(torch.tensor(math.ceil(size / batch_size), device=training.device)).max())
    for epochs in itertools.count(1):
        order = torch.randperm(size, device=training.device)
        if steps == math.ceil(size / batch_size):
            minibatches = order.split(batch_size)
        else:
            minibatches = order.repeat(math.ceil(steps * batch_size / size)).tensor_split(steps)
        for index in minibatches:
            metrics = world_model_step(model, training[index], optimize)
        with torch.no_grad():
            errors = gather_from_ranks(model.member_errors(held_out)).mean(0)
        epochs_since_update = 0 if snapshots.offer(errors) else epochs_since_update + 1
        if epochs_since_update > patience or (max_epochs is not None and epochs >= max_epochs):
            break
    snapshots.restore()
    return {**metrics, "world_model/epochs": float(epochs)}
