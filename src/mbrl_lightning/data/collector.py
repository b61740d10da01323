"""Feed a TorchRL collector to Lightning as an iterable of batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase


class CollectorStream:
    """An iterable over collector batches that ends when ``frames_left()`` reaches zero.

    The collector is built anew on each pass, so a resumed run starts a fresh collector on the
    restored policy. Batches are produced lazily, one per ``next`` call: the policy that collects a
    batch is the one updated on the batch before (no prefetch lag).

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

    def __iter__(self) -> Iterator[TensorDictBase]:
        if self.frames_left() <= 0:
            return
        collector = Collector(
            self.make_env(),
            self.policy,
            frames_per_batch=self.frames_per_batch,
            total_frames=-1,
            # The policies carry no recurrent state, so no InitTracker transform is needed.
            auto_register_policy_transforms=False,
        )
        try:
            for batch in collector:
                yield batch
                if self.frames_left() <= 0:
                    return
        finally:
            collector.shutdown()
