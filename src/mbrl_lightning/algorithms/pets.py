"""PETS (Chua et al. 2018): a bootstrap ensemble world model and a planner that acts with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.planners import CEMPlanner, EnsembleDynamics, MCTSPlanner, MPCPlanner
from mbrl_lightning.planners.dynamics import Propagation, RewardFn, TerminationFn
from mbrl_lightning.planners.stats import PlanningStats
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, WorldModel
from mbrl_lightning.world_models.learner import WorldModelLearner

WorldModelFactory = Callable[[int, int], WorldModel]
PlannerFactory = Callable[[TensorSpec], MPCPlanner | MCTSPlanner]


class RandomUntil(TensorDictModuleBase):
    """Uniformly random actions while ``random_phase`` holds, the planner afterwards (PETS's seed episodes).

    The phase is a buffer the algorithm sets, not a callable reading its frame count: buffers travel
    with the policy's weights, so a collector process's copy leaves the phase when the learner does.

    Args:
        planner: the policy once the model has data.
        action_spec: the unbatched action spec random actions are drawn from.
        random_phase: whether actions start random.
    """

    def __init__(self, planner: TensorDictModuleBase, action_spec: TensorSpec, random_phase: bool = True) -> None:
        super().__init__()
        self.in_keys = ["observation"]
        self.out_keys = ["action"]
        self.planner = planner
        self.action_spec = action_spec
        self.register_buffer("random_phase", torch.tensor(random_phase), persistent=False)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Random or planned actions for every env copy."""
        if not bool(self.random_phase):
            return self.planner(tensordict)
        batch_shape = tensordict.get("observation").shape[:-1]
        return tensordict.set("action", self.action_spec.rand(batch_shape).to(tensordict.device))


class PETS(RLModule):
    """Model-predictive control over a learned ensemble: plan every action, retrain the model every batch.

    The first ``random_frames`` frames are uniformly random. After that the planner acts (in collection
    and in evaluation): it rolls candidate action sequences through the ensemble with trajectory
    sampling (particles kept on one member, ``fixed_member``, or reshuffled, ``random_member``) and
    scores them with the model's reward head or a known ``reward_fn``, ending particles by
    ``termination_fn`` or the model's termination head. Every collected batch goes to the replay
    buffer (a share held out to measure the model) and the model takes ``model_updates_per_batch``
    gradient steps on the whole buffer.

    Args:
        env: the environment factory.
        planner: planner class called as ``planner(action_spec)``; default CEM.
        world_model: class called as ``world_model(observation_size, action_size)``; default 5-member Gaussian ensemble.
        propagation: how particles use the ensemble: ``fixed_member`` (TS-inf), ``random_member`` (TS-1), ``mean``.
        sample_noise: sample next states from the members' predicted Gaussians while planning.
        reward_fn: known reward ``(observation, action, next_observation) -> [..., 1]``; None: learned.
        termination_fn: known termination ``(observation, action, next_observation) -> bool [..., 1]``; None: learned.
        random_frames: frames of uniformly random actions before planning starts.
        buffer_size: replay-buffer capacity in transitions.
        model_lr: Adam learning rate of the world model.
        model_weight_decay: Adam weight decay of the world model.
        model_batch_size: transitions per world-model gradient step.
        model_updates_per_batch: world-model gradient steps per collected batch.
        validation_fraction: share of real transitions held out to measure the model.
        validation_size: capacity of the held-out buffer.
        k_step_horizon: longest horizon of the k-step error diagnostics (compounding error, seed 003).
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    def __init__(
        self,
        env: EnvFactory,
        planner: PlannerFactory | None = None,
        world_model: WorldModelFactory | None = None,
        propagation: Propagation = "fixed_member",
        sample_noise: bool = True,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        random_frames: int = 200,
        buffer_size: int = 1_000_000,
        model_lr: float = 1e-3,
        model_weight_decay: float = 5e-5,
        model_batch_size: int = 256,
        model_updates_per_batch: int = 100,
        validation_fraction: float = 0.1,
        validation_size: int = 5_000,
        k_step_horizon: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        # The CLI logs the whole resolved config; the logger must not see hparams again on resume.
        self.save_hyperparameters(ignore=["env", "planner", "world_model", "reward_fn", "termination_fn"], logger=False)
        require(propagation in ("fixed_member", "random_member", "mean"), "model.propagation", propagation,
                "allowed values are 'fixed_member', 'random_member', 'mean'")
        require(random_frames >= 0, "model.random_frames", random_frames, "must be zero or positive")
        require(model_lr > 0, "model.model_lr", model_lr, "must be positive")
        require(model_batch_size >= 1, "model.model_batch_size", model_batch_size, "must be a positive integer")
        require(model_updates_per_batch >= 0, "model.model_updates_per_batch", model_updates_per_batch,
                "must be zero or positive")
        self.random_frames = random_frames
        self.model_lr = model_lr
        self.model_weight_decay = model_weight_decay
        self.model_batch_size = model_batch_size

        observation_size = int(self.observation_spec.shape[-1])
        action_size = int(self.action_spec.shape[-1]) if self.action_spec.shape else 1
        self.world_model = (world_model or GaussianEnsembleWorldModel)(observation_size, action_size)
        self.replay_buffer = make_replay_buffer(buffer_size)
        self.model_learner = WorldModelLearner(
            self.world_model, self.replay_buffer, batch_size=model_batch_size,
            updates_per_batch=model_updates_per_batch, validation_fraction=validation_fraction,
            validation_size=validation_size, k_step_horizon=k_step_horizon,
        )
        self.planner = (planner or CEMPlanner)(self.action_spec)
        self.planner.dynamics = EnsembleDynamics(
            self.world_model, propagation=propagation, sample_noise=sample_noise,
            reward_fn=reward_fn, termination_fn=termination_fn,
        )
        self._exploration = RandomUntil(self.planner, self.action_spec, random_phase=self.frames < random_frames)

    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """Random actions for ``random_frames`` frames, then the planner."""
        return self._exploration

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The planner (planning is deterministic up to its sampling)."""
        return self.planner

    @property
    def k_step_curve(self) -> torch.Tensor | None:
        """The latest k-step error curve, for the KStepErrorPlot callback."""
        return self.model_learner.k_step_curve

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the world model."""
        return torch.optim.Adam(self.world_model.parameters(), lr=self.model_lr, weight_decay=self.model_weight_decay)

    def worker_modules(self) -> dict[str, torch.nn.Module]:
        """The planner's world model: collector processes plan with its current weights."""
        return {"world_model": self.world_model}

    def update(self, batch: TensorDictBase) -> Metrics:
        """Store the batch, retrain the model on the buffer, measure it; report the planner's cost."""
        self._exploration.random_phase.fill_(self.frames < self.random_frames)
        self.model_learner.store(batch.select(*TRANSITION_KEYS).reshape(-1))
        metrics: Metrics = self.planner.pop_metrics()
        metrics["planner/random_actions"] = float(self.frames <= self.random_frames)
        if len(self.replay_buffer) < self.model_batch_size:
            return metrics
        metrics.update(self.model_learner.train(self.gradient_step(0)))
        metrics.update(self.model_learner.measure(batch))
        return metrics

    def evaluate(self) -> Metrics:
        """Evaluate with the planner; its time there is reported apart from collection's."""
        collection_stats, self.planner.stats = self.planner.stats, PlanningStats()
        metrics = super().evaluate()
        seconds = self.planner.pop_metrics().get("planner/seconds_per_action")
        if seconds is not None:
            metrics["eval/planner_seconds_per_action"] = seconds
        self.planner.stats = collection_stats
        # The evaluation's last plans must not seed the training env's next step.
        self.planner.reset()
        return metrics

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the model learner's held-out buffer and confidence."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["model_learner"] = self.model_learner.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base extras and the model learner's state."""
        super().on_load_checkpoint(checkpoint)
        self.model_learner.load_state_dict(checkpoint["mbrl"]["model_learner"])
        self._exploration.random_phase.fill_(self.frames < self.random_frames)
