"""Feed a TorchRL collector to Lightning as an iterable of batches."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from mbrl_lightning.envs.episode_replay import restore_episodes, snapshot_episodes

log = logging.getLogger(__name__)


class CollectorStream:
    """An iterable over collector batches that ends when ``frames_left()`` reaches zero.

    The collector is built anew on each pass. Batches are produced lazily, one per ``next`` call:
    the policy that collects a batch is the one updated on the batch before (no prefetch lag).
    :meth:`state_dict` captures the in-flight episodes (the collector's carrier and each env copy's
    replayable episode); after :meth:`load_state_dict` the next pass continues them exactly, so a
    resumed run collects the same transitions as one never interrupted.

    Args:
        make_env: builds the training env.
        policy: the exploration policy the collector acts with.
        frames_per_batch: real env frames per batch, summed over the vectorised copies.
        frames_left: how many frames the run still has in its budget.
    """

    def __init__(
        self,
        make_env: Callable[[], EnvBase],
        policy: Callable[[TensorDictBase], TensorDictBase],
        frames_per_batch: int,
        frames_left: Callable[[], int],
    ) -> None:
        self.make_env = make_env
        self.policy = policy
        self.frames_per_batch = frames_per_batch
        self.frames_left = frames_left
        self.collector: Collector | None = None
        self._pending_state: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[TensorDictBase]:
        if self.frames_left() <= 0:
            return
        with _rng_untouched(enabled=self._pending_state is not None):
            collector = Collector(
                self.make_env(),
                self.policy,
                frames_per_batch=self.frames_per_batch,
                total_frames=-1,
                # The policies carry no recurrent state, so no InitTracker transform is needed.
                auto_register_policy_transforms=False,
            )
            if self._pending_state is not None:
                self._continue_episodes(collector, self._pending_state)
                self._pending_state = None
        self.collector = collector
        try:
            for batch in collector:
                yield batch
                if self.frames_left() <= 0:
                    return
        finally:
            # A pass that ends (budget spent) keeps its episodes, for a final checkpoint or a later pass.
            self._pending_state = self._snapshot(collector) or None
            self.collector = None
            collector.shutdown()

    def state_dict(self) -> dict[str, Any]:
        """The in-flight episodes as tensors and plain types (loadable with ``weights_only``); {} if none."""
        if self.collector is None:
            return dict(self._pending_state or {})
        return self._snapshot(self.collector)

    @staticmethod
    def _snapshot(collector: Collector) -> dict[str, Any]:
        episodes = snapshot_episodes(collector.env)
        if episodes is None:
            return {}
        return {
            "carrier": collector._carrier.clone().to_dict(),
            "batch_size": list(collector._carrier.batch_size),
            "episodes": episodes,
            "collector": {key: value for key, value in collector.state_dict().items() if key != "env_state_dict"},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the episodes of ``state`` on the next pass (an empty state starts new episodes)."""
        self._pending_state = state or None

    @staticmethod
    def _continue_episodes(collector: Collector, state: dict[str, Any]) -> None:
        if not restore_episodes(collector.env, state["episodes"]):
            log.warning("The environment did not replay its episodes exactly; in-flight episodes restart.")
            collector._carrier = collector.env.reset()
            return
        collector.load_state_dict(state["collector"], strict=False)
        # TorchRL's load_state_dict starts new trajectories (drawing fresh ids); undo that draw.
        if "traj_pool" in state["collector"]:
            collector._traj_pool.load_state_dict(state["collector"]["traj_pool"])
        # The carrier is the collector's next input: observations plus the step and return counters.
        # TorchRL has no public setter for it.
        collector._carrier = TensorDict.from_dict(state["carrier"], batch_size=state["batch_size"])


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
