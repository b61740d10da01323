"""Dyna-style learning for replay learners: a world model's imagined transitions mixed into every batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import ReplayBuffer

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.model_based import ModelBased
from mbrl_lightning.data import TRANSITION_KEYS
from mbrl_lightning.imagination import ImaginedReplay


class Dyna(ModelBased):
    """Mixin for a :class:`~mbrl_lightning.algorithms.replay_learner.ReplayLearner` (put it first).

    It fills the replay learner's hooks: :meth:`store` goes through the world-model learner (a
    share held out), :meth:`before_updates` trains and measures the world model and then imagines
    transitions from real start states (:class:`ImaginedReplay`), :meth:`replay_batches` mixes real
    and imagined transitions in the configured ratio. A subclass calls :meth:`attach_model_learner`
    and :meth:`attach_imagined_replay` in its ``__init__`` and lists :meth:`with_model_optimizer`'s
    optimizer in ``configure_optimizers``.
    """

    imagined: ImaginedReplay

    def attach_imagined_replay(self, imagined: ImaginedReplay) -> None:
        """Use ``imagined`` for the imagined transitions, its termination rule resolved for this env."""
        imagined.bind_env(self.env)
        self.imagined = imagined

    @property
    def imagination_policy(self) -> TensorDictModuleBase:
        """The policy rolled out in the model: the exploration policy, as on real data."""
        return self.exploration_policy

    def real_transform(self) -> Callable[[TensorDictBase], TensorDictBase] | None:
        """A change of the real samples of every batch (model-predicted targets, say); none here."""
        return None

    def store(self, batch: TensorDictBase) -> None:
        """Store real transitions through the model learner (which flags the held-out share)."""
        self.model_learner.store(batch.select(*TRANSITION_KEYS).reshape(-1))

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Train the world model, measure it, and imagine transitions for the updates."""
        metrics = self.learn_model(batch)
        if self.imagined.due(self.confidence):
            metrics.update(self.imagined.imagine(self.world_model, self.imagination_policy, self.replay_buffer,
                                                 self.device, self.confidence, self.frames))
        return metrics

    def replay_batches(self, count: int) -> Iterator[TensorDictBase]:
        """Real transitions (changed by :meth:`real_transform`) mixed with imagined ones, one batch per step."""
        transform = self.real_transform()
        for _ in range(count):
            yield self.imagined.mixed_batch(self.replay_buffer, self.batch_size, self.device, transform)

    def checkpointed_buffers(self) -> dict[str, ReplayBuffer]:
        """Real, held-out and imagined transitions."""
        return {**super().checkpointed_buffers(), "imagined": self.imagined.buffer}

    def checkpointed_state(self) -> dict[str, Any]:
        """The learner's state and the imagined-frame counter."""
        return {**super().checkpointed_state(), "imagined": self.imagined}
