"""The one update of every learner that replays stored transitions: value-based and actor-critic alike."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.errors import require


class ReplayLearner(RLModule):
    """Store each collected batch, anneal exploration, then take ``updates_per_batch`` replayed gradient steps.

    The hooks, in the order :meth:`update` calls them:

    - :meth:`store`: put the batch in the replay buffer (model-based learners also hold a share out);
    - :meth:`exploration_metrics`: after the exploration module has stepped by the batch's frames;
    - :meth:`before_updates`: work before the gradient steps (world-model learning, imagination);
    - :meth:`replay_batches`: the transitions of every gradient step, drawn lazily;
    - :meth:`train_batch`: changes one step's transitions (bonuses, imagined data) and reports on them;
    - :meth:`gradient_update`: one gradient step; returns its detached loss terms.

    Subclasses call :meth:`configure_replay` and set ``exploration`` (a TorchRL exploration module with ``step``, or None when the actor's own
    sampling explores).
    """

    batch_size: int
    learning_starts: int
    updates_per_batch: int
    exploration: TensorDictModuleBase | None

    def configure_replay(
        self, batch_size: int, buffer_size: int, replay_storage: StorageKind, learning_starts: int,
        updates_per_batch: int,
    ) -> None:
        """Check and keep the replay settings every replay learner has; make its replay buffer."""
        require(batch_size >= 1, "model.batch_size", batch_size, "must be a positive integer")
        require(buffer_size >= batch_size, "model.buffer_size", buffer_size,
                f"must hold at least one batch (model.batch_size={batch_size})")
        require(updates_per_batch >= 1, "model.updates_per_batch", updates_per_batch, "must be a positive integer")
        self.batch_size = batch_size
        self.learning_starts = learning_starts
        self.updates_per_batch = updates_per_batch
        self.replay_buffer = make_replay_buffer(buffer_size, storage=replay_storage)

    def store(self, batch: TensorDictBase) -> None:
        """Add a collected batch to the replay buffer."""
        self.replay_buffer.extend(batch.select(*TRANSITION_KEYS).reshape(-1).cpu())

    @abstractmethod
    def exploration_metrics(self) -> Metrics:
        """The exploration schedule's current value (epsilon, noise scale)."""

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Work between storing a batch and the gradient steps (model learning, imagination); none here."""
        return {}

    def replay_batches(self, count: int) -> Iterator[TensorDictBase]:
        """The transitions of ``count`` gradient steps: one replay sample each, drawn when its step comes."""
        for _ in range(count):
            yield self.replay_buffer.sample(self.batch_size).to(self.device)

    def learning_started(self) -> bool:
        """Whether all DDP ranks together hold ``learning_starts`` transitions (each holds an equal shard)."""
        return len(self.replay_buffer) * self.world_size >= self.learning_starts

    def updates_due(self, frames: int) -> int:
        """Gradient steps to take after a batch of ``frames`` new frames (all ranks'): ``updates_per_batch`` here."""
        return self.updates_per_batch

    def train_batch(self, sample: TensorDictBase) -> tuple[TensorDictBase, Metrics]:
        """One step's transitions as the loss sees them (changed by subclasses), and metrics about them."""
        return sample, {}

    @abstractmethod
    def gradient_update(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """One gradient step on ``sample``; returns its detached loss terms, keyed by metric name."""

    def anneal_exploration(self, frames: int) -> None:
        """Advance the exploration schedule by ``frames`` collected frames."""
        if self.exploration is not None:
            self.exploration.step(frames)

    def update(self, batch: TensorDictBase) -> Metrics:
        """Store the batch, anneal exploration, then take :meth:`updates_due` gradient steps."""
        self.store(batch)
        # Schedules count the frames of all DDP ranks, which collect equal shares of each batch.
        frames = batch.numel() * self.world_size
        self.anneal_exploration(frames)
        metrics = self.exploration_metrics()
        if not self.learning_started():
            return metrics
        metrics.update(self.before_updates(batch))
        losses: dict[str, list[torch.Tensor]] = {}
        sample_metrics: dict[str, list[float]] = {}
        for sample in self.replay_batches(self.updates_due(frames)):
            sample, about = self.train_batch(sample)
            for key, value in self.gradient_update(sample).items():
                losses.setdefault(key, []).append(value)
            for key, value in about.items():
                sample_metrics.setdefault(key, []).append(value)
        # Loss values are read once, after the loop, rather than one ``.item()`` per step.
        metrics.update({key: torch.stack(values).mean().item() for key, values in losses.items()})
        metrics.update({key: sum(values) / len(values) for key, values in sample_metrics.items()})
        return metrics
