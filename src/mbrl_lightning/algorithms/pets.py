"""PETS (Chua et al. 2018): a bootstrap ensemble world model and a planner that acts with it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.algorithms.model_based import LearnerFactory, ModelBased
from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.planners import CEMPlanner, EnsembleDynamics, MCTSPlanner, MPCPlanner
from mbrl_lightning.planners.dynamics import Propagation, RewardFn, TerminationFn
from mbrl_lightning.planners.stats import PlanningStats
from mbrl_lightning.world_models import GaussianEnsembleWorldModel
from mbrl_lightning.world_models.learner import WorldModelLearner

PlannerFactory = Callable[[TensorSpec], MPCPlanner | MCTSPlanner]
# PETS's settings where the YAML gives no ``model_learning`` block.
DEFAULT_LEARNER = partial(WorldModelLearner, world_model=GaussianEnsembleWorldModel, lr=1e-3, weight_decay=5e-5,
                          batch_size=256, updates_per_batch=100, validation_size=5_000, k_step_horizon=10)


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


class PETS(ModelBased, RLModule):
    """Model-predictive control over a learned ensemble: plan every action, retrain the model every batch.

    The first ``random_frames`` frames are uniformly random. After that the planner acts (in collection
    and in evaluation): it rolls candidate action sequences through the ensemble with trajectory
    sampling (particles kept on one member, ``fixed_member``, or reshuffled, ``random_member``) and
    scores them with the model's reward head or a known ``reward_fn``, ending particles by
    ``termination_fn`` or the model's termination head. Every collected batch goes to the replay
    buffer (a share held out to measure the model) and the model takes ``model_learning.updates_per_batch``
    gradient steps on the whole buffer.

    Args:
        env: the environment factory.
        planner: planner class called as ``planner(action_spec)``; default CEM.
        propagation: how particles use the ensemble: ``fixed_member`` (TS-inf), ``random_member`` (TS-1), ``mean``.
        sample_noise: sample next states from the members' predicted Gaussians while planning.
        reward_fn: known reward ``(observation, action, next_observation) -> [..., 1]``; None: learned.
        termination_fn: known termination ``(observation, action, next_observation) -> bool [..., 1]``; None: learned.
        random_frames: frames of uniformly random actions before planning starts.
        buffer_size: replay-buffer capacity in transitions.
        model_learning: the world model and how it learns (:class:`WorldModelLearner`); default a
            5-member Gaussian ensemble, 100 steps of Adam (lr 1e-3, weight decay 5e-5) per batch.
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    def __init__(
        self,
        env: EnvFactory,
        planner: PlannerFactory | None = None,
        model_learning: LearnerFactory | None = None,
        propagation: Propagation = "fixed_member",
        sample_noise: bool = True,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        random_frames: int = 200,
        buffer_size: int = 1_000_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        # The CLI logs the whole resolved config; the logger must not see hparams again on resume.
        self.save_hyperparameters(ignore=["env", "planner", "model_learning", "reward_fn", "termination_fn"], logger=False)
        require(propagation in ("fixed_member", "random_member", "mean"), "model.propagation", propagation,
                "allowed values are 'fixed_member', 'random_member', 'mean'")
        require(random_frames >= 0, "model.random_frames", random_frames, "must be zero or positive")
        self.random_frames = random_frames
        self.replay_buffer = make_replay_buffer(buffer_size)
        action_size = int(self.action_spec.shape[-1]) if self.action_spec.shape else 1
        self.attach_model_learner(model_learning, DEFAULT_LEARNER, self.replay_buffer, action_size)
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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the world model."""
        return self.with_model_optimizer([])[0]

    def worker_modules(self) -> dict[str, torch.nn.Module]:
        """The planner's world model: collector processes plan with its current weights."""
        return {"world_model": self.world_model}

    def update(self, batch: TensorDictBase) -> Metrics:
        """Store the batch, retrain the model on the buffer, measure it; report the planner's cost."""
        self._exploration.random_phase.fill_(self.frames < self.random_frames)
        self.model_learner.store(batch.select(*TRANSITION_KEYS).reshape(-1))
        metrics: Metrics = self.planner.pop_metrics()
        metrics["planner/random_actions"] = float(self.frames <= self.random_frames)
        if len(self.replay_buffer) < self.model_learner.batch_size:
            return metrics
        metrics.update(self.learn_model(batch))
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base extras, then the random phase that follows the restored frame count."""
        super().on_load_checkpoint(checkpoint)
        self._exploration.random_phase.fill_(self.frames < self.random_frames)
