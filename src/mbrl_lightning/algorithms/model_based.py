"""What every model-based algorithm shares: one world-model learner, composed, and what it reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.world_models.learner import WorldModelLearner

LearnerFactory = Callable[[int, int], WorldModelLearner]


class ModelBased(RLModule):
    """Mixin for algorithms that learn a world model: put it before the algorithm's base class.

    ``attach_model_learner`` builds the :class:`WorldModelLearner` from its YAML block (one
    ``model_learning`` key), registers its world model as ``self.world_model`` (so the weights
    travel with the module and its checkpoints) and keeps the learner's own state (held-out
    buffer, confidence) in every checkpoint. The algorithm then calls :meth:`learn_model` once per
    collected batch, ``configure_optimizers`` having listed :meth:`with_model_optimizer`'s optimizer.
    """

    model_learner: WorldModelLearner | None = None

    def attach_model_learner(
        self, factory: LearnerFactory | None, default: LearnerFactory, replay_buffer: ReplayBuffer | None = None,
        action_size: int | None = None, register: bool = True, observation_size: int | None = None,
    ) -> WorldModelLearner:
        """Build the learner (``default`` when ``factory`` is None), sized by the env; share ``replay_buffer``.

        ``register=False`` when another registered part (a curiosity module) already holds the
        world model, so its weights are stored once.
        """
        observation_size = int(self.observation_spec.shape[-1]) if observation_size is None else observation_size
        action_size = int(self.action_spec.shape[-1]) if action_size is None else action_size
        learner = (factory or default)(observation_size, action_size)
        if replay_buffer is not None:
            learner.learn_from(replay_buffer)
        self.model_learner = learner
        if register:
            self.world_model = learner.world_model
        return learner

    @property
    def confidence(self) -> float:
        """The world model's latest held-out confidence, ``exp(-val_loss)`` (0 without a world model)."""
        return self.model_learner.confidence if self.model_learner is not None else 0.0

    @property
    def k_step_curve(self) -> torch.Tensor | None:
        """The latest k-step error curve, for the KStepErrorPlot callback."""
        return self.model_learner.k_step_curve if self.model_learner is not None else None

    def with_model_optimizer(self, optimizers: list[torch.optim.Optimizer]) -> list[torch.optim.Optimizer]:
        """``optimizers`` and then the world model's, whose index :meth:`learn_model` remembers."""
        self._model_optimizer_index = len(optimizers)
        return [*optimizers, self.model_learner.make_optimizer()]

    def learn_model(self, trajectories: TensorDictBase, fresh_loss: float | None = None) -> Metrics:
        """Train the world model with its optimizer and measure it on ``trajectories`` (see ``WorldModelLearner.fit``)."""
        metrics = self.model_learner.fit(trajectories, self.gradient_step(self._model_optimizer_index), fresh_loss)
        # Under DDP each rank measured the model on its own held-out share: all take the mean, so
        # decisions and weights read from the confidence agree (rollout counts set gradient steps).
        self.model_learner.confidence = self.mean_over_ranks(self.model_learner.confidence)
        return metrics

    def checkpointed_state(self) -> dict[str, Any]:
        """The learner's held-out buffer and confidence, besides the base class's parts."""
        parts = super().checkpointed_state()
        if self.model_learner is not None:
            parts["model_learner"] = self.model_learner
        return parts
