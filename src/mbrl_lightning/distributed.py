"""Collectives for statistics every DDP rank must hold alike; in one process they change nothing."""

from __future__ import annotations

import torch
import torch.distributed as dist


def process_count() -> int:
    """Processes training together (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_from_ranks(row: torch.Tensor) -> torch.Tensor:
    """``row`` of every rank stacked in rank order, ``[ranks, *row.shape]`` (a collective call).

    Every rank must call it the same number of times with the same shape, as with any collective.
    """
    if process_count() == 1:
        return row.unsqueeze(0)
    rows = [torch.empty_like(row) for _ in range(process_count())]
    dist.all_gather(rows, row.contiguous())
    return torch.stack(rows)
