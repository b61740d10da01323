"""Periodic parameter resets against the primacy bias (Nikishin et al. 2022; SR-SPR, D'Oro et al. 2023)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from mbrl_lightning.errors import require


def _initialisable(modules: Iterable[nn.Module]) -> list[nn.Module]:
    """Every submodule that draws its own initial parameters (``reset_parameters``), each once."""
    seen: dict[int, nn.Module] = {}
    for module in modules:
        for part in module.modules():
            if hasattr(part, "reset_parameters") and next(part.parameters(recurse=False), None) is not None:
                seen.setdefault(id(part), part)
    return list(seen.values())


def _forget_optimizer_state(optimizer: torch.optim.Optimizer, parameters: Iterable[nn.Parameter]) -> None:
    """Drop the moment estimates of ``parameters``: the optimizer starts them afresh at its next step."""
    for parameter in parameters:
        optimizer.state.pop(parameter, None)


@torch.no_grad()
def reinitialise_(modules: Iterable[nn.Module], optimizer: torch.optim.Optimizer | None = None) -> None:
    """Draw fresh initial parameters for ``modules`` (their own ``reset_parameters``) and forget their optimizer state."""
    for part in _initialisable(modules):
        part.reset_parameters()
        if hasattr(part, "reset_noise"):  # a noisy layer's noise was drawn for the old sigma
            part.reset_noise()
        if optimizer is not None:
            _forget_optimizer_state(optimizer, part.parameters(recurse=False))


@torch.no_grad()
def shrink_and_perturb_(modules: Iterable[nn.Module], shrink: float, perturb: float) -> None:
    """Replace every parameter ``p`` by ``shrink * p + perturb * p0`` with ``p0`` a fresh initial draw (Ash & Adams 2020).

    The optimizer state is kept, as SR-SPR and BBF keep it for the encoder they shrink and perturb.
    """
    for part in _initialisable(modules):
        kept = [p.detach().clone() for p in part.parameters(recurse=False)]
        part.reset_parameters()
        for parameter, old in zip(part.parameters(recurse=False), kept):
            parameter.mul_(perturb).add_(old, alpha=shrink)
        if hasattr(part, "reset_noise"):
            part.reset_noise()


class ResetSchedule:
    """When resets fall due: every ``every`` frames, skipping those that leave less than ``every`` frames before ``until``.

    BBF's and SR-SPR's rule (``reset_every``, ``no_resets_after``): a reset happens only when a whole
    interval is left to recover before ``until``. The count of resets done is checkpointed, so a
    resumed run resets on the same frames.
    """

    def __init__(self, every: int, until: int) -> None:
        require(every >= 0, "model.reset_every_frames", every, "must be 0 (no resets) or a positive number of agent steps")
        require(until >= 0, "model.resets_until_frames", until, "must be 0 or more")
        self.every = every
        self.until = until
        self.done = 0

    def frames_of(self, index: int) -> int:
        """The frame count at which reset number ``index`` (from 1) falls due."""
        return index * self.every

    def due(self, frames: int) -> bool:
        """Whether a reset is to happen at ``frames``; one that falls due is counted as done even when skipped."""
        if not self.every:
            return False
        if frames < self.frames_of(self.done + 1):
            return False
        self.done = frames // self.every
        return frames + self.every <= self.until

    def state_dict(self) -> dict[str, int]:
        """The resets done so far."""
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the resets done so far."""
        self.done = int(state["done"])

    def state_missing(self, extras: dict) -> None:
        """A checkpoint from before resets were on: the resets that fell due by its frame count as done."""
        self.done = int(extras["frames"]) // self.every if self.every else 0
