"""Feed a TorchRL collector to Lightning as an iterable of batches."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.envs import EnvBase

from mbrl_lightning.data.vector_collector import VectorEnvCollector, supports_lean_collection
from mbrl_lightning.envs.episode_replay import restore_episodes, snapshot_episodes
from mbrl_lightning.errors import ConfigurationError

log = logging.getLogger(__name__)

CollectorKind = Literal["auto", "lean", "torchrl", "multi_sync"]
COLLECTOR_KINDS = ("auto", "lean", "torchrl", "multi_sync")
AnyCollector = Collector | VectorEnvCollector | MultiSyncCollector


class CollectorStream:
    """An iterable over collector batches that ends when ``frames_left()`` reaches zero.

    The collector is built anew on each pass. Batches are produced lazily, one per ``next`` call:
    the policy that collects a batch is the one updated on the batch before (no prefetch lag).
    :meth:`state_dict` captures the in-flight episodes (the collector's carrier and each env copy's
    replayable episode); after :meth:`load_state_dict` the next pass continues them exactly, so a
    resumed run collects the same transitions as one never interrupted.

    Three collectors give the batches (``collector``):

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
    ) -> None:
        if collector not in COLLECTOR_KINDS:
            raise ConfigurationError(f"model.collector={collector!r}: must be one of {', '.join(map(repr, COLLECTOR_KINDS))}.")
        if collector == "multi_sync" and make_worker_env is None:
            raise ValueError("collector='multi_sync' needs make_worker_env.")
        self.make_env = make_env
        self.policy = policy
        self.frames_per_batch = frames_per_batch
        self.frames_left = frames_left
        self.kind = collector
        self.make_worker_env = make_worker_env
        self.workers = workers
        self.collector: AnyCollector | None = None
        self._pending_state: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[TensorDictBase]:
        if self.frames_left() <= 0:
            return
        with _rng_untouched(enabled=self._pending_state is not None):
            collector = self._make_collector()
            if self._pending_state is not None:
                self._continue_episodes(collector, self._pending_state)
                self._pending_state = None
        self.collector = collector
        try:
            for batch in collector:
                yield batch
                if self.frames_left() <= 0:
                    return
                if isinstance(collector, MultiSyncCollector):
                    # The workers hold copies of the policy: send them the weights just updated.
                    collector.update_policy_weights_()
        finally:
            # A pass that ends (budget spent) keeps its episodes, for a final checkpoint or a later pass.
            self._pending_state = self._snapshot(collector) or None
            self.collector = None
            collector.shutdown()

    def _make_collector(self) -> AnyCollector:
        if self.kind == "multi_sync":
            return MultiSyncCollector(
                [self.make_worker_env(index) for index in range(self.workers)],
                self.policy,
                frames_per_batch=self.frames_per_batch,
                total_frames=-1,
            )
        env = self.make_env()
        if self.kind == "lean" and not supports_lean_collection(env):
            env.close()
            raise ConfigurationError(
                "model.collector='lean': this env has keys or autoreset semantics the lean collector does not "
                "reproduce; use 'auto' or 'torchrl'."
            )
        if self.kind in ("lean", "auto") and supports_lean_collection(env):
            return VectorEnvCollector(env, self.policy, self.frames_per_batch)
        return Collector(
            env,
            self.policy,
            frames_per_batch=self.frames_per_batch,
            total_frames=-1,
            # The policies carry no recurrent state, so no InitTracker transform is needed.
            auto_register_policy_transforms=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """The in-flight episodes as tensors and plain types (loadable with ``weights_only``); {} if none."""
        if self.collector is None:
            return dict(self._pending_state or {})
        return self._snapshot(self.collector)

    @staticmethod
    def _snapshot(collector: AnyCollector) -> dict[str, Any]:
        if isinstance(collector, MultiSyncCollector):
            return {}
        episodes = snapshot_episodes(collector.env)
        if episodes is None:
            return {}
        carrier = collector.carrier if isinstance(collector, VectorEnvCollector) else collector._carrier
        return {
            "carrier": carrier.clone().to_dict(),
            "batch_size": list(carrier.batch_size),
            "episodes": episodes,
            "collector": {key: value for key, value in collector.state_dict().items() if key != "env_state_dict"},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the episodes of ``state`` on the next pass (an empty state starts new episodes)."""
        self._pending_state = state or None

    @staticmethod
    def _continue_episodes(collector: AnyCollector, state: dict[str, Any]) -> None:
        if isinstance(collector, MultiSyncCollector):
            log.warning("Collector processes cannot replay in-flight episodes; they restart.")
            return
        if not restore_episodes(collector.env, state["episodes"]):
            log.warning("The environment did not replay its episodes exactly; in-flight episodes restart.")
            if isinstance(collector, VectorEnvCollector):
                collector.restart_episodes()
            else:
                collector._carrier = collector.env.reset()
            return
        carrier = TensorDict.from_dict(state["carrier"], batch_size=state["batch_size"])
        if isinstance(collector, VectorEnvCollector):
            collector.load_state_dict(state["collector"])
            collector.carrier = carrier
            return
        collector.load_state_dict(state["collector"], strict=False)
        # TorchRL's load_state_dict starts new trajectories (drawing fresh ids); undo that draw.
        if "traj_pool" in state["collector"]:
            collector._traj_pool.load_state_dict(state["collector"]["traj_pool"])
        # The carrier is the collector's next input: observations plus the step and return counters.
        # TorchRL has no public setter for it.
        collector._carrier = carrier


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
