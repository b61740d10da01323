"""Dyna-style imagined data: model rollouts kept in their own replay and mixed into every learner batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.imagination.rollout import Propagation, imagine
from mbrl_lightning.imagination.termination import CHOICES, TerminationFunction, resolve_termination, with_observation_scale
from mbrl_lightning.world_models import WorldModel

# The key TorchRL's losses read per-sample weights from (``use_prioritized_weights="auto"``).
SAMPLE_WEIGHT_KEY = "priority_weight"
Policy = Callable[[TensorDictBase], TensorDictBase]


@dataclass
class ImaginedReplay:
    """Imagined transitions from real start states, and batches that mix them with real ones.

    After the world model learns, :meth:`imagine` rolls the policy out for ``horizon`` steps from
    ``starts`` states drawn from the real replay buffer (only while the model's confidence reaches
    ``min_confidence``) and keeps the live steps. :meth:`mixed_batch` draws ``fraction`` of a
    batch from them and the rest from real data. With ``weight_by_confidence`` every sample
    carries a weight (1 for real, the model's confidence for imagined) under the key TorchRL's
    losses read (``priority_weight``).

    Attributes (the YAML keys of the ``imagined`` block):
        buffer_size: capacity of the imagined-transition buffer.
        starts: real start states rolled out per collected batch.
        horizon: imagined steps per start.
        fraction: share of every batch drawn from imagined transitions.
        min_confidence: imagine only when the model's confidence reaches this.
        propagation: ensemble propagation of imagined rollouts.
        weight_by_confidence: weight imagined samples by the model's confidence.
    """

    buffer_size: int = 50_000
    starts: int = 256
    horizon: int = 1
    fraction: float = 0.5
    min_confidence: float = 0.0
    propagation: Propagation = "random_member"
    weight_by_confidence: bool = False
    rollout_schedule: Sequence[int] | None = None
    retain_rollouts: int | None = None
    termination: str = "learned"
    real_ratio: float | None = None
    sample_noise: bool = False
    frames: int = field(default=0, init=False)
    confidence: float = field(default=0.0, init=False)
    last_horizon: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        require(0.0 <= self.fraction < 1.0, "model.imagined.fraction", self.fraction, "must lie in [0, 1)")
        require(self.horizon >= 1, "model.imagined.horizon", self.horizon, "must be a positive integer")
        require(self.starts >= 1, "model.imagined.starts", self.starts, "must be a positive integer")
        require(self.termination in CHOICES, "model.imagined.termination", self.termination,
                f"allowed values are {', '.join(map(repr, CHOICES))}")
        if self.real_ratio is not None:
            require(0.0 <= self.real_ratio <= 1.0, "model.imagined.real_ratio", self.real_ratio, "must lie in [0, 1]")
            self.fraction = 1.0 - self.real_ratio
        if self.rollout_schedule is not None:
            schedule = list(self.rollout_schedule)
            require(len(schedule) == 4 and 0 <= schedule[0] <= schedule[1] and min(schedule[2:]) >= 1,
                    "model.imagined.rollout_schedule", schedule,
                    "must be [start_frame, end_frame, min_horizon, max_horizon] with 0 <= start_frame <= end_frame "
                    "and horizons of at least 1")
            self.rollout_schedule = [int(value) for value in schedule]
        if self.retain_rollouts is not None:
            require(self.retain_rollouts >= 1, "model.imagined.retain_rollouts", self.retain_rollouts,
                    "must be a positive integer (or null: a buffer of buffer_size)")
        self._termination: TerminationFunction | None = None
        self.buffer: ReplayBuffer = make_replay_buffer(self.capacity_at(self.horizon_at(0)))

    def bind_env(self, env: EnvFactory) -> None:
        """Resolve ``termination`` for ``env`` (on the observations as the env presents them)."""
        function = resolve_termination(self.termination, env.env_id)
        if function is not None and env.observation_norm_frames > 0:
            function = with_observation_scale(function, *env.observation_stats())
        self._termination = function

    def horizon_at(self, real_frames: int) -> int:
        """The rollout horizon after ``real_frames`` real frames (``rollout_schedule``, else ``horizon``)."""
        if self.rollout_schedule is None:
            return self.horizon
        start, end, shortest, longest = self.rollout_schedule
        progress = 1.0 if end == start else min(max((real_frames - start) / (end - start), 0.0), 1.0)
        return int(shortest + progress * (longest - shortest))

    def capacity_at(self, horizon: int) -> int:
        """The buffer's capacity for rollouts of ``horizon`` steps."""
        return self.buffer_size if self.retain_rollouts is None else self.retain_rollouts * self.starts * horizon

    def due(self, confidence: float) -> bool:
        """Whether imagined data is used at this confidence."""
        return self.fraction > 0 and confidence >= self.min_confidence

    def imagine(
        self, world_model: WorldModel, policy: Policy, real: ReplayBuffer, device: torch.device, confidence: float,
        real_frames: int = 0,
    ) -> dict[str, float]:
        """Roll ``policy`` out in the model from real states; keep the live steps; return metrics."""
        self.confidence = confidence
        horizon = self.horizon_at(real_frames)
        self.last_horizon = horizon
        self.resize(self.capacity_at(horizon))
        start = real.sample(self.starts).to(device)
        with set_exploration_type(ExplorationType.RANDOM):
            rollout = imagine(world_model, policy, start, horizon, propagation=self.propagation,
                              sample_noise=self.sample_noise, termination=self._termination)
        alive = rollout.reshape(-1)
        alive = alive[alive["weight"] > 0]
        self.buffer.extend(alive.select(*TRANSITION_KEYS).cpu())
        self.frames += alive.numel()
        return {
            "imagination/rollouts": float(self.starts),
            "imagination/frames": float(self.frames),
            "imagination/mean_length": alive.numel() / self.starts,
            "imagination/rollout_length": float(horizon),
            "imagination/model_buffer_size": float(len(self.buffer)),
            "imagination/confidence_gate": float(confidence >= self.min_confidence),
        }

    def resize(self, capacity: int) -> None:
        """Give the buffer ``capacity``, keeping its newest transitions (MBPO reallocates its model pool so)."""
        if capacity == self.buffer.storage.max_size:
            return
        resized = make_replay_buffer(capacity)
        if len(self.buffer):
            stored = self.buffer[:]
            if len(self.buffer) == self.buffer.storage.max_size:  # full: the oldest row is at the write cursor
                cursor = self.buffer.state_dict()["_writer"]["_cursor"]
                stored = torch.cat([stored[cursor:], stored[:cursor]], 0)
            resized.extend(stored[-capacity:])
        self.buffer = resized

    def imagined_count(self, batch_size: int) -> int:
        """How many of ``batch_size`` samples are imagined (none while the buffer is empty)."""
        if not len(self.buffer):
            return 0
        if self.real_ratio is not None:
            return batch_size - int(batch_size * self.real_ratio)
        return int(batch_size * self.fraction)

    def mixed_batch(
        self, real: ReplayBuffer, batch_size: int, device: torch.device,
        transform_real: Callable[[TensorDictBase], TensorDictBase] | None = None,
    ) -> TensorDictBase:
        """``batch_size`` transitions: real ones (changed by ``transform_real``) and ``fraction`` imagined."""
        imagined_count = self.imagined_count(batch_size)
        samples = real.sample(batch_size - imagined_count).select(*TRANSITION_KEYS).to(device)
        if transform_real is not None:
            samples = transform_real(samples)
        if self.weight_by_confidence:
            samples.set(SAMPLE_WEIGHT_KEY, torch.ones(samples.shape, device=device))
        if not imagined_count:
            return samples
        imagined = self.buffer.sample(imagined_count).to(device).select(*TRANSITION_KEYS)
        if self.weight_by_confidence:
            imagined.set(SAMPLE_WEIGHT_KEY, torch.full(imagined.shape, self.confidence, device=device))
        return torch.cat([samples, imagined], 0)

    def mixed_batches(self, real: ReplayBuffer, count: int, batch_size: int, device: torch.device) -> Iterator[TensorDictBase]:
        """``count`` batches as :meth:`mixed_batch` draws them, with one sampling call per buffer for all of them."""
        imagined_count = self.imagined_count(batch_size)
        parts = []
        for buffer, rows, weight in ((real, batch_size - imagined_count, 1.0),
                                     (self.buffer, imagined_count, self.confidence)):
            if not rows:
                continue
            part = buffer.sample(count * rows).select(*TRANSITION_KEYS).to(device)
            if self.weight_by_confidence:
                part.set(SAMPLE_WEIGHT_KEY, torch.full(part.shape, weight, device=device))
            parts.append(part.reshape(count, rows))
        yield from torch.cat(parts, 1).unbind(0)

    def state_dict(self) -> dict:
        """Counters, the confidence the weights use and the buffer's capacity (its contents are saved apart)."""
        return {"frames": self.frames, "confidence": self.confidence, "last_horizon": self.last_horizon,
                "capacity": self.buffer.storage.max_size}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`, after the buffer's contents were loaded."""
        self.frames = state["frames"]
        self.confidence = state["confidence"]
        self.last_horizon = state.get("last_horizon", 0)
        capacity = state.get("capacity", self.buffer.storage.max_size)
        if capacity != self.buffer.storage.max_size:
            # The contents, loaded into a buffer built for the first horizon, move to one of their capacity.
            contents = self.buffer.state_dict()
            self.buffer = make_replay_buffer(capacity)
            self.buffer.load_state_dict(contents)
