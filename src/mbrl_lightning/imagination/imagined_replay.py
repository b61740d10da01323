"""Dyna-style imagined data: model rollouts kept in their own replay and mixed into every learner batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.errors import require
from mbrl_lightning.imagination.rollout import Propagation, imagine
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
    frames: int = field(default=0, init=False)
    confidence: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        require(0.0 <= self.fraction < 1.0, "model.imagined.fraction", self.fraction, "must lie in [0, 1)")
        require(self.horizon >= 1, "model.imagined.horizon", self.horizon, "must be a positive integer")
        require(self.starts >= 1, "model.imagined.starts", self.starts, "must be a positive integer")
        self.buffer: ReplayBuffer = make_replay_buffer(self.buffer_size)

    def due(self, confidence: float) -> bool:
        """Whether imagined data is used at this confidence."""
        return self.fraction > 0 and confidence >= self.min_confidence

    def imagine(
        self, world_model: WorldModel, policy: Policy, real: ReplayBuffer, device: torch.device, confidence: float
    ) -> dict[str, float]:
        """Roll ``policy`` out in the model from real states; keep the live steps; return metrics."""
        self.confidence = confidence
        start = real.sample(self.starts).to(device)
        with set_exploration_type(ExplorationType.RANDOM):
            rollout = imagine(world_model, policy, start, self.horizon, propagation=self.propagation)
        alive = rollout.reshape(-1)
        alive = alive[alive["weight"] > 0]
        self.buffer.extend(alive.select(*TRANSITION_KEYS).cpu())
        self.frames += alive.numel()
        return {
            "imagination/rollouts": float(self.starts),
            "imagination/frames": float(self.frames),
            "imagination/mean_length": alive.numel() / self.starts,
            "imagination/confidence_gate": float(confidence >= self.min_confidence),
        }

    def mixed_batch(
        self, real: ReplayBuffer, batch_size: int, device: torch.device,
        transform_real: Callable[[TensorDictBase], TensorDictBase] | None = None,
    ) -> TensorDictBase:
        """``batch_size`` transitions: real ones (changed by ``transform_real``) and ``fraction`` imagined."""
        imagined_count = int(batch_size * self.fraction) if len(self.buffer) else 0
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

    def state_dict(self) -> dict:
        """The imagined-frame counter and the confidence the weights use (the buffer is saved apart)."""
        return {"frames": self.frames, "confidence": self.confidence}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.frames = state["frames"]
        self.confidence = state["confidence"]
