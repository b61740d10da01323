"""Minibatch index sets whose count every DDP rank agrees on, whatever its local sample count."""

from __future__ import annotations

import math

import torch


def minibatch_count(size: int, minibatch: int) -> int:
    """Minibatches of at most ``minibatch`` samples that cover ``size`` samples once."""
    return math.ceil(size / minibatch)


def minibatch_indices(size: int, minibatch: int, steps: int, device: torch.device | str) -> list[torch.Tensor]:
    """``steps`` index sets over a random permutation of ``size`` samples.

    Where ``steps`` is this rank's own count (:func:`minibatch_count`), the sets are the usual
    minibatches of ``minibatch`` samples (the last one shorter). Under DDP another rank may hold
    more samples (imagined ones, say) and need more steps; this rank then splits its permutation
    into ``steps`` near-equal sets, repeating the permutation where it has fewer samples than
    steps, so that both ranks take the same number of gradient steps and each sample still counts
    about equally.
    """
    order = torch.randperm(size, device=device)
    if steps == minibatch_count(size, minibatch):
        return list(order.split(minibatch))
    if size < steps:
        order = order.repeat(math.ceil(steps / size))
    return list(order.tensor_split(steps))
