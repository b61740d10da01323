"""Per-rank checkpoint extras under DDP: every rank's replay shard, episodes in flight and generators.

Lightning writes the checkpoint from rank 0 alone, so what only another rank holds (its replay
shard, its in-flight episodes, its random generators, its held-out data) has to travel to rank 0
before the write, and each rank has to take its own part back on resume.
"""

from __future__ import annotations

import logging
from typing import Any

import torch.distributed as dist

# Top-level checkpoint key: the ``mbrl`` extras of ranks 1, 2, ... (rank 0's stay under ``mbrl``).
OTHER_RANKS_KEY = "mbrl_other_ranks"

log = logging.getLogger(__name__)


def gather_other_ranks(extras: dict[str, Any] | None, rank: int, world_size: int) -> list[dict[str, Any]] | None:
    """On rank 0, the ``extras`` of every other rank in rank order; ``None`` on the others (a collective call)."""
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(extras, gathered, dst=0)
    return gathered[1:] if gathered is not None else None


def own_extras(checkpoint: dict[str, Any], rank: int) -> tuple[dict[str, Any], bool]:
    """This rank's ``mbrl`` extras from ``checkpoint``, and whether they are its own.

    A checkpoint written by fewer ranks (or before shards existed) has no part for ``rank``: it then
    gets rank 0's, which the caller must not treat as its own episodes.
    """
    if rank == 0:
        return checkpoint["mbrl"], True
    shards = checkpoint.get(OTHER_RANKS_KEY) or []
    if rank - 1 < len(shards):
        return shards[rank - 1], True
    log.warning("The checkpoint holds no replay shard of rank %d: it starts from rank 0's, with new episodes.", rank)
    return checkpoint["mbrl"], False


def use_own_loader_state(checkpoint: dict[str, Any], episodes: dict[str, Any]) -> None:
    """Make the fit loop's saved collector state this rank's ``episodes``.

    Lightning stores the state of a stateful dataloader (the collector stream: the episodes in
    flight) with the fit loop, from rank 0 alone, and loads it into every rank's stream after the
    module's own hook; left alone, it would replace this rank's episodes with rank 0's.
    """
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
    if "combined_loader" in loop:
        loop["combined_loader"] = [episodes]
