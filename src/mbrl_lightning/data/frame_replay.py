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
from mbrl_lightning.data.ring_journal import RingJournal, remove_journals
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

    Checkpoints: by default :meth:`state_dict` holds the filled frames (a full copy each time).
    After :meth:`keep_in` (the checkpoint callback calls it with a folder next to the run's
    checkpoints) the frames live once in that folder, a checkpoint holds the write position and
    the per-step data, and a :class:`~mbrl_lightning.data.ring_journal.RingJournal` keeps the rows
    overwritten since the newest ``last.ckpt`` so that it restores exactly.
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
        self.folder: Path | None = None  # where the frames are kept across checkpoints (keep_in)
        self.steps: torch.Tensor | None = None  # absolute step each slot holds, for checking a restore
        self.journal: RingJournal | None = None

    # ----------------------------------------------------------------- storage
    def keep_in(self, folder: str | Path) -> None:
        """Keep the frames in ``folder`` from now on, so that checkpoints reference them instead of copying them."""
        if self.storage == "memmap" and self.frames is None:
            self.folder = Path(folder).resolve()

    def _open_kept(self, frame_shape: tuple[int, ...], create: bool) -> None:
        shape = (self.slots, self.num_envs, *frame_shape)
        files = {"frames": (shape, torch.uint8), "next_frames": (shape, torch.uint8), "steps": ((self.slots,), torch.int64)}
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_journals(self.folder)
        for name, (size, dtype) in files.items():
            path = self.folder / f"{name}.memmap"
            if create:
                tensor = MemoryMappedTensor.empty(size, dtype=dtype, filename=path)
            elif path.is_file():
                tensor = MemoryMappedTensor.from_filename(path, dtype, torch.Size(size))
            else:
                raise ConfigurationError(
                    f"replay buffer: {path} is missing; checkpoints saved with checkpoint.upload_buffer=false keep "
                    "the frames in that folder, so resume where it is, or from a checkpoint saved with "
                    "--checkpoint.upload_buffer true."
                )
            setattr(self, name, tensor)
        if create:
            self.steps.fill_(-1)

    def _allocate(self, batch: TensorDictBase, create: bool = True) -> None:
        frame_shape = batch["observation"].shape[-2:]
        shape = (self.slots, self.num_envs, *frame_shape)
        if self.folder is not None:
            self._open_kept(tuple(frame_shape), create)
        elif self.storage == "memmap":
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
        self._journal_overwrites(slots, torch.arange(self.written, self.written + steps) - self.slots)
        time_major = batch.transpose(0, 1)
        self.frames[slots] = time_major["observation"][..., -1, :, :]
        self.next_frames[slots] = time_major["next", "observation"][..., -1, :, :]
        self.data[slots] = time_major.exclude(*FRAME_KEYS)
        if self.steps is not None:
            self.steps[slots] = torch.arange(self.written, self.written + steps)
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
        # Advanced indexing already copies: no clone needed.
        transitions = self.data[slots, envs]
        source = self._stack_sources(steps, envs, transitions["step_count"].reshape(-1).long())
        del transitions["step_count"]
        observation = self._frame_rows(self.frames, source, envs.unsqueeze(-1))
        transitions["observation"] = observation
        newest = self._frame_rows(self.next_frames, slots, envs)[:, None]
        transitions["next", "observation"] = torch.cat([observation[:, 1:], newest], 1)
        return transitions

    def next_observations(self, steps: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """The next observation stacks ``[len(steps), frame_stack, H, W]`` of the transitions at ``steps``, frames only."""
        slots = steps % self.slots
        source = self._stack_sources(steps, envs, self.data["step_count"][slots, envs].reshape(-1).long())
        return torch.cat([self._frame_rows(self.frames, source[:, 1:], envs.unsqueeze(-1)),
                          self._frame_rows(self.next_frames, slots, envs)[:, None]], 1)

    def _stack_sources(self, steps: torch.Tensor, envs: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Slots of the ``frame_stack`` frames of each observation, oldest first (the episode's first one repeated before it)."""
        back = torch.arange(self.frame_stack - 1, -1, -1)
        return (steps.unsqueeze(-1) - torch.minimum(back, count.unsqueeze(-1))) % self.slots

    def _frame_rows(self, frames: torch.Tensor, slots: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """``frames[slots, envs]`` (broadcast index shapes, then ``H, W``) as one ``index_select`` of whole frames.

        Why not ``frames[slots, envs]``: the advanced index copies byte by byte; ``index_select`` copies
        each 84x84 frame as one row, about ten times faster on a 32-sample batch.
        """
        rows = (slots * self.num_envs + envs).reshape(-1)
        shape = torch.broadcast_shapes(slots.shape, envs.shape)
        return frames.view(-1, *frames.shape[2:]).flatten(1).index_select(0, rows).view(*shape, *frames.shape[2:])

    # ----------------------------------------------------------------- checkpoints
    def _rows(self, slots: torch.Tensor) -> torch.Tensor:
        """What the journal keeps of ``slots``: step stamp, frames and next frames, as ``[k, bytes]`` uint8."""
        count = len(slots)
        return torch.cat([self.steps[slots].contiguous().view(torch.uint8).reshape(count, 8),
                          self.frames[slots].reshape(count, -1), self.next_frames[slots].reshape(count, -1)], 1)

    def _journal_overwrites(self, slots: torch.Tensor, old_steps: torch.Tensor) -> None:
        """Before overwriting, journal the rows the newest checkpoint still holds (steps in ``[0, since)``)."""
        if self.journal is None:
            return
        needed = (old_steps >= 0) & (old_steps < self.journal.since)
        if needed.any():
            self.journal.append(slots[needed], self._rows(slots[needed]))

    def restore_point_saved(self) -> None:
        """The newest ``last.ckpt`` now holds this position: journal overwrites from here, drop older journals."""
        if self.folder is None or self.frames is None:
            return
        self.journal = RingJournal(self.folder, self.written, 8 + 2 * self.frames[0].numel())
        remove_journals(self.folder, keep=self.journal.path)

    def state_dict(self) -> dict[str, Any]:
        """The filled part of the buffer (for checkpoints that resume exactly); only its position where frames are kept."""
        if self.frames is None:
            return {"written": 0}
        filled = min(self.written, self.slots)
        data = self.data[:filled].flatten_keys(".").to_dict()
        if self.folder is not None:
            return {"written": self.written, "folder": str(self.folder), "frame_shape": list(self.frames.shape[2:]),
                    "data": data}
        return {
            "written": self.written,
            "frames": self.frames[:filled].clone(),
            "next_frames": self.next_frames[:filled].clone(),
            "data": data,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.written = state["written"]
        if not self.written:
            return
        filled = min(self.written, self.slots)
        data = TensorDict(state["data"], batch_size=[filled, self.num_envs]).unflatten_keys(".")
        batch = data[:1].transpose(0, 1).clone()
        if "folder" in state:
            self.folder = Path(state["folder"])
            batch["observation"] = torch.zeros(self.num_envs, 1, *state["frame_shape"], dtype=torch.uint8)
            self._allocate(batch, create=False)
            self.data[:filled] = data
            self._replay_journal()
            return
        batch["observation"] = state["frames"][:1].unsqueeze(2).transpose(0, 1)
        self._allocate(batch)
        self.frames[:filled] = state["frames"]
        self.next_frames[:filled] = state["next_frames"]
        self.data[:filled] = data

    def _replay_journal(self) -> None:
        """Write back the rows overwritten after the checkpoint, then check that every slot holds its step."""
        self.restore_point_saved()  # the journal of this position (empty if nothing was overwritten)
        slots, rows = self.journal.records()
        if len(slots):
            frame_bytes = self.frames[0].numel()
            self.steps[slots] = rows[:, :8].contiguous().view(torch.int64).reshape(-1)
            self.frames[slots] = rows[:, 8:8 + frame_bytes].reshape(self.frames[slots].shape)
            self.next_frames[slots] = rows[:, 8 + frame_bytes:].reshape(self.next_frames[slots].shape)
            self.journal.reset()
        window = torch.arange(max(0, self.written - self.slots), self.written)
        if (self.steps[window % self.slots] != window).any():
            raise ConfigurationError(
                f"replay buffer in {self.folder}: frames this checkpoint needs (step {self.written:,}) were overwritten "
                "after it was saved; only the newest last.ckpt resumes with its buffer."
            )
