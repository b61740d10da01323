"""Feed a collector to Lightning as an iterable of batches."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.envs import EnvBase

from mbrl_lightning.data.collector_kinds import (
    COLLECTOR_KINDS,
    Collection,
    CollectionSetup,
    CollectorKind,
    make_collection,
)
from mbrl_lightning.errors import ConfigurationError

__all__ = ["COLLECTOR_KINDS", "CollectorKind", "CollectorStream"]


class CollectorStream:
    """An iterable over collector batches that ends when ``frames_left()`` reaches zero.

    The collector is built anew on each pass. Batches are produced lazily, one per ``next`` call:
    the policy that collects a batch is the one updated on the batch before (no prefetch lag).
    :meth:`state_dict` captures the in-flight episodes (the collector's carrier and each env copy's
    replayable episode); after :meth:`load_state_dict` the next pass continues them exactly, so a
    resumed run collects the same transitions as one never interrupted.

    Three collectors give the batches (``collector``, see ``collector_kinds.py``):

    - ``lean``: :class:`VectorEnvCollector`, steps the in-process vector env directly; the same
      batches as ``torchrl`` at several times its speed on cheap envs.
    - ``torchrl``: TorchRL's ``Collector`` over the TorchRL env.
    - ``multi_sync``: TorchRL's ``MultiSyncCollector``, ``workers`` processes each stepping its own
      share of the env copies (for costly simulators on many cores). Its envs live in other
      processes, so a checkpoint cannot hold their episodes: they restart on resume.
    - ``auto``: ``lean`` wherever it is exact (checked on the env), else ``torchrl``.

    Args:
        make_env: builds the training env.
        policy: the exploration policy the collector acts with.
        frames_per_batch: real env frames per batch, summed over the vectorised copies.
        frames_left: how many frames the run still has in its budget.
        collector: which collector produces the batches (see above).
        make_worker_env: for ``multi_sync``: worker index -> a picklable builder of that worker's env.
        workers: for ``multi_sync``: the number of collector processes.
        worker_modules: for ``multi_sync``: modules the policy reads besides its own parameters,
            whose weights the workers receive with the policy's after every batch.
    """

    def __init__(
        self,
        make_env: Callable[[], EnvBase],
        policy: Callable[[TensorDictBase], TensorDictBase],
        frames_per_batch: int,
        frames_left: Callable[[], int],
        collector: CollectorKind = "auto",
        make_worker_env: Callable[[int], Callable[[], EnvBase]] | None = None,
        workers: int = 2,
        worker_modules: Mapping[str, nn.Module] | None = None,
    ) -> None:
        if collector not in COLLECTOR_KINDS:
            raise ConfigurationError(f"model.collector={collector!r}: must be one of {', '.join(map(repr, COLLECTOR_KINDS))}.")
        if collector == "multi_sync" and make_worker_env is None:
            raise ValueError("collector='multi_sync' needs make_worker_env.")
        self.setup = CollectionSetup(make_env, policy, frames_per_batch, make_worker_env, workers, dict(worker_modules or {}))
        self.frames_left = frames_left
        self.kind = collector
        self.collector: Collection | None = None
        self._pending_state: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[TensorDictBase]:
        if self.frames_left() <= 0:
            return
        with _rng_untouched(enabled=self._pending_state is not None):
            collector = make_collection(self.kind, self.setup)
            if self._pending_state is not None:
                collector.restore(self._pending_state)
                self._pending_state = None
        self.collector = collector
        ended_cleanly = False
        try:
            for batch in collector:
                yield batch
                if self.frames_left() <= 0:
                    break
                collector.sync_weights()
            ended_cleanly = True
        except GeneratorExit:  # the consumer stopped iterating: the collector's state is consistent
            ended_cleanly = True
            raise
        finally:
            # A pass that ends (budget spent) keeps its episodes, for a final checkpoint or a later pass;
            # one that failed mid-batch has no consistent state to keep.
            if ended_cleanly:
                self._pending_state = collector.snapshot() or None
            self.collector = None
            collector.shutdown()

    def state_dict(self) -> dict[str, Any]:
        """The in-flight episodes as tensors and plain types (loadable with ``weights_only``); {} if none."""
        if self.collector is None:
            return dict(self._pending_state or {})
        return self.collector.snapshot()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the episodes of ``state`` on the next pass (an empty state starts new episodes)."""
        self._pending_state = state or None


@contextmanager
def _rng_untouched(enabled: bool) -> Iterator[None]:
    """Leave the global random generators as they were, so a resumed run draws what the original drew."""
    if not enabled:
        yield
        return
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
