"""TensorDict replay buffers of real transitions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import RandomSampler

from mbrl_lightning.errors import ConfigurationError

StorageKind = Literal["memory", "memmap"]

# What a transition is, for every learner that replays data; collector bookkeeping stays out.
TRANSITION_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
)


def make_replay_buffer(
    capacity: int,
    batch_size: int | None = None,
    storage: StorageKind = "memory",
    scratch_dir: str | Path | None = None,
) -> TensorDictReplayBuffer:
    """A uniformly sampled buffer of ``capacity`` transitions held in RAM or memory-mapped on disk.

    ``batch_size`` is the default sample size; leave it out when callers pass one to ``sample``.
    """
    if capacity < 1:
        raise ConfigurationError(f"buffer_size={capacity}: must be a positive integer.")
    if storage == "memory":
        backing = LazyTensorStorage(capacity)
    elif storage == "memmap":
        backing = LazyMemmapStorage(capacity, scratch_dir=scratch_dir)
    else:
        raise ConfigurationError(f"replay_storage={storage!r}: allowed values are 'memory', 'memmap'.")
    return TensorDictReplayBuffer(storage=backing, sampler=RandomSampler(), batch_size=batch_size)
