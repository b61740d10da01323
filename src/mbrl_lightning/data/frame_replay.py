"""A replay buffer of stacked-frame transitions that stores each frame once, as uint8."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch
from tensordict import MemoryMappedTensor, TensorDict, TensorDictBase

from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.errors import ConfigurationError

# Small per-transition data a learner needs besides the frames and ``step_count``.
SCALAR_KEYS = (
    "action",
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
)
FRAME_KEYS = ("observation", ("next", "observation"))


class FrameStackReplay:
    """Transitions of ``frame_stack``-frame observations, rebuilt on sampling from single frames.

    A transition ``(s, a, r, s')`` of stacked frames repeats ``frame_stack - 1`` frames of ``s`` in
    ``s'`` and of the previous transitions, so storing both stacks costs ``2 * frame_stack`` frames
    per transition. Here each env copy writes its own time-ordered ring; a slot keeps the newest
    frame of ``s`` and of ``s'`` (2 frames) and the episode step count, and sampling rebuilds
    ``s`` from the frames of earlier slots of the same episode (the first frame repeated before
    the start, as ``FrameStackObservation`` pads) and ``s'`` as ``s`` shifted by one plus its
    newest frame. At 96x96 that is 18.4 KB per transition: 18.4 GB for 1M agent steps instead of
    73.7 GB for two uint8 stacks. TorchRL's buffers store whole samples, hence this class.

    Batches must come as ``[num_envs, time]`` in collection order (a collector's batch), with
    ``observation``, ``("next", "observation")`` and ``step_count``; every other key is kept per
    transition as given.

    Args:
        capacity: transitions kept (over all env copies); the oldest are overwritten.
        num_envs: env copies writing in parallel (each gets ``capacity // num_envs`` slots).
        frame_stack: frames per observation.
        storage: ``memmap`` (files in ``scratch_dir`` or a temporary folder) or ``memory``.
        scratch_dir: folder of the memory-mapped files.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_stack: int,
        storage: StorageKind = "memmap",
        scratch_dir: str | Path | None = None,
    ) -> None:
        if capacity < num_envs * (frame_stack + 1):
            raise ConfigurationError(
                f"buffer_size={capacity}: must hold at least frame_stack + 1 = {frame_stack + 1} steps per env copy."
            )
        if storage not in ("memory", "memmap"):
            raise ConfigurationError(f"replay_storage={storage!r}: allowed values are 'memory', 'memmap'.")
        self.slots = capacity // num_envs
        self.num_envs = num_envs
        self.frame_stack = frame_stack
        self.storage = storage
        self.scratch_dir = scratch_dir
        self.written = 0  # steps written per env copy, ever
        self.frames: torch.Tensor | None = None
        self.next_frames: torch.Tensor | None = None
        self.data: TensorDictBase | None = None

    # ----------------------------------------------------------------- storage
    def _allocate(self, batch: TensorDictBase) -> None:
        frame_shape = batch["observation"].shape[-2:]
        shape = (self.slots, self.num_envs, *frame_shape)
        if self.storage == "memmap":
            folder = Path(tempfile.mkdtemp(prefix="frames-", dir=self.scratch_dir))
            weakref.finalize(self, shutil.rmtree, folder, True)
            self.frames = MemoryMappedTensor.empty(shape, dtype=torch.uint8, filename=folder / "frames.memmap")
            self.next_frames = MemoryMappedTensor.empty(shape, dtype=torch.uint8, filename=folder / "next.memmap")
        else:
            self.frames = torch.empty(shape, dtype=torch.uint8)
            self.next_frames = torch.empty(shape, dtype=torch.uint8)
        example = batch[:, 0].exclude(*FRAME_KEYS)
        self.data = example.new_zeros(self.num_envs).expand(self.slots, self.num_envs).clone()

    def extend(self, batch: TensorDictBase) -> None:
        """Append a ``[num_envs, time]`` batch of consecutive transitions."""
        if batch.batch_dims != 2 or batch.shape[0] != self.num_envs:
            raise ValueError(f"FrameStackReplay expects batches shaped [{self.num_envs}, time], got {tuple(batch.shape)}")
        batch = batch.cpu()
        if self.frames is None:
            self._allocate(batch)
        steps = batch.shape[1]
        slots = torch.arange(self.written, self.written + steps) % self.slots
        time_major = batch.transpose(0, 1)
        self.frames[slots] = time_major["observation"][..., -1, :, :]
        self.next_frames[slots] = time_major["next", "observation"][..., -1, :, :]
        self.data[slots] = time_major.exclude(*FRAME_KEYS)
        self.written += steps

    def __len__(self) -> int:
        return min(self.written, self.slots) * self.num_envs

    @property
    def nbytes(self) -> int:
        """Bytes held by frames and per-step data."""
        if self.frames is None:
            return 0
        return 2 * self.frames.numel() + int(self.data.bytes())

    # ----------------------------------------------------------------- sampling
    def sample(self, batch_size: int) -> TensorDict:
        """``batch_size`` uniformly drawn transitions with rebuilt ``observation`` stacks."""
        return self.gather(*self.uniform_indices(batch_size))

    @property
    def first_valid_step(self) -> int:
        """The oldest absolute step whose frame stack is still stored."""
        oldest = max(0, self.written - self.slots)
        # Once the ring wraps, the oldest slots' earlier frames are overwritten: skip them.
        return oldest + (self.frame_stack - 1 if oldest else 0)

    def uniform_indices(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` uniformly drawn (absolute step, env copy) pairs of stored transitions."""
        if not len(self):
            raise RuntimeError("cannot sample from an empty FrameStackReplay")
        steps = torch.randint(self.first_valid_step, self.written, (batch_size,))
        envs = torch.randint(0, self.num_envs, (batch_size,))
        return steps, envs

    def gather(self, steps: torch.Tensor, envs: torch.Tensor) -> TensorDict:
        """Transitions at absolute step indices ``steps`` of env copies ``envs``."""
        slots = steps % self.slots
        count = self.data["step_count"][slots, envs].reshape(-1).long()
        back = torch.arange(self.frame_stack - 1, -1, -1)  # oldest frame first
        source = (steps.unsqueeze(-1) - torch.minimum(back, count.unsqueeze(-1))) % self.slots
        observation = self.frames[source, envs.unsqueeze(-1)]
        newest = self.next_frames[slots, envs].unsqueeze(1)
        transitions = self.data[slots, envs].clone()
        del transitions["step_count"]
        transitions["observation"] = observation
        transitions["next", "observation"] = torch.cat([observation[:, 1:], newest], 1)
        return transitions

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The filled part of the buffer (for checkpoints that resume exactly)."""
        if self.frames is None:
            return {"written": 0}
        filled = min(self.written, self.slots)
        return {
            "written": self.written,
            "frames": self.frames[:filled].clone(),
            "next_frames": self.next_frames[:filled].clone(),
            "data": self.data[:filled].flatten_keys(".").to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.written = state["written"]
        if not self.written:
            return
        filled = state["frames"].shape[0]
        data = TensorDict(state["data"], batch_size=[filled, self.num_envs]).unflatten_keys(".")
        batch = data[:1].transpose(0, 1).clone()
        batch["observation"] = state["frames"][:1].unsqueeze(2).transpose(0, 1)
        self._allocate(batch)
        self.frames[:filled] = state["frames"]
        self.next_frames[:filled] = state["next_frames"]
        self.data[:filled] = data
