"""Everything an algorithm does to learn a world model from its real data, in one place."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer

from mbrl_lightning.data import make_replay_buffer
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.world_models.base import WorldModel
from mbrl_lightning.world_models.training import (
    VALIDATION_KEY,
    k_step_errors,
    mark_validation,
    validation_metrics,
    world_model_step,
)


class WorldModelLearner:
    """Stores real transitions (a share held out), trains the model, and measures it.

    The held-out transitions stay in the replay buffer for other learners, flagged so the world
    model never trains on them, and are copied to a small validation buffer that gives the
    held-out loss and the confidence ``exp(-val_loss)`` (seed 003).

    Args:
        model: the world model.
        replay_buffer: buffer of real transitions, shared with the algorithm or the learner's own.
        batch_size: transitions per gradient step.
        updates_per_batch: gradient steps per collected batch.
        validation_fraction: share of real transitions held out.
        validation_size: capacity of the held-out buffer (newest kept).
        k_step_horizon: longest horizon of the k-step error diagnostics.
    """

    def __init__(
        self,
        model: WorldModel,
        replay_buffer: ReplayBuffer,
        batch_size: int = 256,
        updates_per_batch: int = 20,
        validation_fraction: float = 0.1,
        validation_size: int = 2_000,
        k_step_horizon: int = 10,
    ) -> None:
        if not 0.0 < validation_fraction < 1.0:
            raise ConfigurationError(f"model.validation_fraction={validation_fraction}: must lie in (0, 1).")
        self.model = model
        self.replay_buffer = replay_buffer
        self.validation_buffer = make_replay_buffer(validation_size)
        self.batch_size = batch_size
        self.updates_per_batch = updates_per_batch
        self.validation_fraction = validation_fraction
        self.k_step_horizon = k_step_horizon
        self.confidence = 0.0
        self.k_step_curve: torch.Tensor | None = None

    def store(self, transitions: TensorDictBase) -> None:
        """Add flat real transitions: flag the held-out share, update the model's normalisers."""
        transitions = mark_validation(transitions.cpu(), self.validation_fraction)
        self.replay_buffer.extend(transitions)
        held_out = transitions[transitions[VALIDATION_KEY]]
        if held_out.shape[0]:  # not numel(): a TensorDict's numel is at least 1, even with no rows
            self.validation_buffer.extend(held_out)
        device = next(self.model.parameters()).device
        self.model.observe(transitions[~transitions[VALIDATION_KEY]].to(device))

    def train(self, optimize: Callable[[torch.Tensor], None]) -> dict[str, float]:
        """``updates_per_batch`` gradient steps on the training share of the buffer."""
        device = next(self.model.parameters()).device
        metrics: dict[str, float] = {}
        for _ in range(self.updates_per_batch):
            metrics = world_model_step(self.model, self.replay_buffer.sample(self.batch_size).to(device), optimize)
        return metrics

    def measure(self, trajectories: TensorDictBase) -> dict[str, float]:
        """Held-out loss, confidence and k-step errors on the newest real trajectories ``[envs, time]``."""
        metrics: dict[str, float] = {}
        device = next(self.model.parameters()).device
        if len(self.validation_buffer):
            metrics = validation_metrics(self.model, self.validation_buffer[:].to(device))
            self.confidence = metrics["world_model/confidence"]
        self.k_step_curve = k_step_errors(self.model, trajectories.to(device), self.k_step_horizon)
        metrics.update({f"world_model/k_step_error_{k}": error
                        for k, error in enumerate(self.k_step_curve.tolist(), start=1)})
        return metrics

    def state_dict(self) -> dict:
        """What a checkpoint needs besides the model weights and the shared buffer."""
        return {"confidence": self.confidence, "validation": self.validation_buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.confidence = state["confidence"]
        self.validation_buffer.load_state_dict(state["validation"])
