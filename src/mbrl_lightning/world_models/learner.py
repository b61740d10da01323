"""The model-based part of an algorithm: a world model and everything it takes to learn it from real data."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer

from mbrl_lightning.data import make_replay_buffer
from mbrl_lightning.distributed import gather_from_ranks, process_count
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.world_models.contract import DynamicsModel
from mbrl_lightning.world_models.deterministic import MLPWorldModel
from mbrl_lightning.world_models.early_stopping import train_until_converged
from mbrl_lightning.world_models.training import (
    VALIDATION_KEY,
    k_step_errors,
    mark_validation,
    validation_metrics,
    world_model_step,
)

WorldModelFactory = Callable[[int, int], DynamicsModel]
# What a vector world model trains on (the replay buffer holds more: held-out flags, done).
MODEL_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"))


class WorldModelLearner:
    """A world model, its optimiser settings, its training schedule, diagnostics and checkpoint state.

    Every model-based algorithm composes one, configured in the YAML as one block (its
    ``model_learning`` key). Real transitions are stored through :meth:`store`: a random share is
    held out, flagged in the replay buffer so the world model never trains on it (other learners
    still replay it) and copied to a small validation buffer; the rest updates the model's
    normalisers. After each collected batch :meth:`fit` takes ``updates_per_batch`` gradient steps
    and measures the model: held-out loss, confidence ``exp(-val_loss)`` (the adaptive-imagination design) and the k-step
    open-loop errors on the newest trajectories.

    Args:
        observation_size: width of the observation vector (derived from the env).
        action_size: width of the action vector, one-hot for discrete actions (derived).
        world_model: class called as ``world_model(observation_size, action_size)``; default MLP.
        lr: Adam learning rate of the world model.
        weight_decay: Adam weight decay of the world model.
        batch_size: transitions per gradient step.
        updates_per_batch: gradient steps per collected batch.
        validation_fraction: share of real transitions held out to measure the model; 0 measures
            it on each new batch before training on it (frame models, whose held-out stacks would be large).
        validation_size: capacity of the held-out buffer (newest kept).
        k_step_horizon: longest horizon of the k-step error diagnostics (0: none; vector models only).
        buffer_size: capacity of the learner's own replay buffer, used unless the algorithm shares its
            own through :meth:`learn_from`.
        early_stopping_patience: when set, each :meth:`train` runs epochs over every training
            transition instead of ``updates_per_batch`` steps, until no ensemble member's held-out
            error improved (by more than ``min_improvement``, relative) for more than this many
            epochs; each member ends with its best weights (MBPO's model training, patience 5).
        max_epochs: the most epochs of one such training (None: until the held-out error stops improving).
        min_improvement: relative held-out improvement that counts for ``early_stopping_patience``.
    """

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        world_model: WorldModelFactory | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        updates_per_batch: int = 20,
        validation_fraction: float = 0.1,
        validation_size: int = 2_000,
        k_step_horizon: int = 10,
        buffer_size: int = 100_000,
        early_stopping_patience: int | None = None,
        max_epochs: int | None = None,
        min_improvement: float = 0.01,
    ) -> None:
        if not 0.0 <= validation_fraction < 1.0:
            raise ConfigurationError(
                f"model.model_learning.validation_fraction={validation_fraction}: must lie in [0, 1) "
                "(0: each new batch is held out until the model has been measured on it)."
            )
        require(lr > 0, "model.model_learning.lr", lr, "must be positive")
        require(batch_size >= 1, "model.model_learning.batch_size", batch_size, "must be a positive integer")
        require(updates_per_batch >= 0, "model.model_learning.updates_per_batch", updates_per_batch,
                "must be zero or positive")
        if early_stopping_patience is not None:
            require(early_stopping_patience >= 0, "model.model_learning.early_stopping_patience",
                    early_stopping_patience, "must be zero or positive (or null: fixed updates_per_batch steps)")
            require(validation_fraction > 0, "model.model_learning.validation_fraction", validation_fraction,
                    "must be positive with early_stopping_patience (early stopping reads the held-out share)")
        require(max_epochs is None or max_epochs >= 1, "model.model_learning.max_epochs", max_epochs,
                "must be a positive integer or null")
        self.world_model = (world_model or MLPWorldModel)(observation_size, action_size)
        self.lr = lr
        self.weight_decay = weight_decay
        self.replay_buffer = make_replay_buffer(buffer_size)
        self.validation_buffer = make_replay_buffer(validation_size)
        self.batch_size = batch_size
        self.updates_per_batch = updates_per_batch
        self.validation_fraction = validation_fraction
        self.k_step_horizon = k_step_horizon
        self.early_stopping_patience = early_stopping_patience
        self.max_epochs = max_epochs
        self.min_improvement = min_improvement
        self.confidence = 0.0
        self.k_step_curve: torch.Tensor | None = None

    def learn_from(self, replay_buffer: ReplayBuffer) -> WorldModelLearner:
        """Train on ``replay_buffer`` (the algorithm's own) instead of a buffer of the learner's."""
        self.replay_buffer = replay_buffer
        return self

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the world model's parameters."""
        return torch.optim.Adam(self.world_model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @property
    def device(self) -> torch.device:
        """Where the world model's parameters live."""
        return next(self.world_model.parameters()).device

    def store(self, transitions: TensorDictBase) -> None:
        """Add flat real transitions: flag the held-out share, update the model's normalisers."""
        if not self.validation_fraction:
            self.replay_buffer.extend(transitions.cpu())
            self.world_model.observe(transitions.to(self.device))
            return
        transitions = mark_validation(transitions.cpu(), self.validation_fraction)
        self.replay_buffer.extend(transitions)
        held_out = transitions[transitions[VALIDATION_KEY]]
        if held_out.shape[0]:  # not numel(): a TensorDict's numel is at least 1, even with no rows
            self.validation_buffer.extend(held_out)
        self.world_model.observe(transitions[~transitions[VALIDATION_KEY]].to(self.device))

    def train(self, optimize: Callable[[torch.Tensor], None]) -> dict[str, float]:
        """``updates_per_batch`` gradient steps on the training share of the buffer (or epochs with early stopping)."""
        device = self.device
        # Every DDP rank must take the same path: epochs only once every rank holds held-out data.
        held_out_everywhere = self.early_stopping_patience is not None and bool(
            gather_from_ranks(torch.tensor(len(self.validation_buffer), device=device)).min() > 0)
        if held_out_everywhere:
            stored = self.replay_buffer[:]
            training = stored[~stored[VALIDATION_KEY]].select(*MODEL_KEYS).to(device)
            # The even held-out rows pick the kept weights, as they pick the elites in ``validate``; the
            # odd rows stay unseen by every choice, so the measured loss is not biased low.
            held_out = self.validation_buffer[:].to(device)
            held_out = held_out[0::2] if held_out.shape[0] >= 2 else held_out
            return train_until_converged(self.world_model, training, held_out, self.batch_size, optimize,
                                         self.early_stopping_patience, self.max_epochs, self.min_improvement)
        metrics: dict[str, float] = {}
        # Under DDP each rank samples its share of the batch from its own data; DDP averages the gradients.
        batch_size = max(self.batch_size // process_count(), 1)
        for _ in range(self.updates_per_batch):
            metrics = world_model_step(self.world_model, self.replay_buffer.sample(batch_size).to(device), optimize)
        return metrics

    def measure(self, trajectories: TensorDictBase, fresh_loss: float | None = None) -> dict[str, float]:
        """Held-out loss, confidence and k-step errors on the newest real trajectories ``[envs, time]``.

        With ``validation_fraction`` 0 the newest trajectories are the held-out data (``fresh_loss``:
        their loss, when the caller has computed it already).
        """
        metrics: dict[str, float] = {}
        device = self.device
        if not self.validation_fraction:
            if fresh_loss is None:
                metrics = validation_metrics(self.world_model, trajectories.reshape(-1).to(device))
            else:
                metrics = {"world_model/val_loss": fresh_loss, "world_model/confidence": math.exp(-fresh_loss)}
        elif len(self.validation_buffer):
            metrics = validation_metrics(self.world_model, self.validation_buffer[:].to(device))
        if metrics:
            self.confidence = metrics["world_model/confidence"]
        if not self.k_step_horizon:
            return metrics
        self.k_step_curve = k_step_errors(self.world_model, trajectories.to(device), self.k_step_horizon)
        metrics.update({f"world_model/k_step_error_{k}": error
                        for k, error in enumerate(self.k_step_curve.tolist(), start=1)})
        return metrics

    def fit(
        self, trajectories: TensorDictBase, optimize: Callable[[torch.Tensor], None], fresh_loss: float | None = None
    ) -> dict[str, float]:
        """One collected batch's model learning: train on the buffer and measure on ``trajectories``.

        The measurement follows training, except with ``validation_fraction`` 0, where the newest
        batch must be measured before the model trains on it.
        """
        if not self.validation_fraction:
            metrics = self.measure(trajectories, fresh_loss)
            metrics.update(self.train(optimize))
            return metrics
        metrics = self.train(optimize)
        metrics.update(self.measure(trajectories))
        return metrics

    def state_dict(self) -> dict:
        """What a checkpoint needs besides the model weights and the shared buffer."""
        return {"confidence": self.confidence, "validation": self.validation_buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.confidence = state["confidence"]
        self.validation_buffer.load_state_dict(state["validation"])
