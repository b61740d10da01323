"""Model-based RL for discrete actions: MCTS over a learned world model."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.model_based import LearnerFactory
from mbrl_lightning.algorithms.pets import DEFAULT_LEARNER, PETS, PlannerFactory, RandomUntil
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.planners import MCTSPlanner
from mbrl_lightning.planners.dynamics import Propagation, RewardFn, TerminationFn
from mbrl_lightning.planners.value import LeafValueLearner
from mbrl_lightning.world_models import MLPWorldModel

# PETS's model-learning settings with a deterministic MLP, expanded by its mean prediction.
DEFAULT_MCTS_LEARNER = partial(DEFAULT_LEARNER, world_model=MLPWorldModel)


class VisitSampling(TensorDictModuleBase):
    """The planner's search, acting by root visits sampled at ``temperature`` (collection only)."""

    def __init__(self, planner: MCTSPlanner, temperature: float) -> None:
        super().__init__()
        self.in_keys = ["observation"]
        self.out_keys = ["action"]
        self.planner = planner
        self.temperature = temperature

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """One search per env copy; the action drawn from its root visit counts."""
        return self.planner.forward(tensordict, temperature=self.temperature)


class MCTSAgent(PETS):
    """Acts by tree search (UCB1 or PUCT) in a world model it retrains on its real data every batch.

    The loop is PETS's (random frames first, then every action is searched; the model learns from
    the replay buffer after every batch); only the planner and the defaults differ: a deterministic
    MLP model, expanded by its mean prediction, and :class:`~mbrl_lightning.planners.MCTSPlanner`.
    With ``value_updates_per_batch > 0`` a state-value network learns TD(lambda) returns of the same
    buffer (:class:`~mbrl_lightning.planners.value.LeafValueLearner`, the planner's discount) and values the
    leaves after their rollouts (``rollout_horizon: 0`` values leaves by the network alone).

    Args:
        env: the environment factory; actions must be discrete.
        planner: planner class called as ``planner(action_spec)``; default MCTS.
        model_learning: the world model and how it learns (:class:`WorldModelLearner`); default
            PETS's settings with an MLP world model.
        propagation: how the tree uses an ensemble; ``mean`` keeps tree nodes deterministic.
        sample_noise: sample next states from predicted Gaussians (probabilistic models only).
        reward_fn: known reward function; None: learned.
        termination_fn: known termination function; None: learned.
        value_updates_per_batch: gradient steps of the leaf-value network per collected batch; 0: no value network.
        value_hidden_sizes: hidden widths of the leaf-value network.
        value_lr: Adam learning rate of the leaf-value network.
        value_batch_size: transitions per leaf-value gradient step.
        value_tau: Polyak step of the leaf-value target network per gradient step.
        value_lambda: TD(lambda) trace decay of the leaf-value targets (0: TD(0), 1: Monte-Carlo returns).
        collect_temperature: collection actions drawn with probability ``visits^(1/T)`` (AlphaZero's
            self-play); 0: the most visited, as in evaluation, which always takes the most visited.
        **kwargs: the model-learning, budget and evaluation settings of :class:`PETS`.
    """

    def __init__(
        self,
        env: EnvFactory,
        planner: PlannerFactory | None = None,
        model_learning: LearnerFactory | None = None,
        propagation: Propagation = "mean",
        sample_noise: bool = False,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        value_updates_per_batch: int = 0,
        value_hidden_sizes: Sequence[int] = (128, 128),
        value_lr: float = 1e-3,
        value_batch_size: int = 256,
        value_tau: float = 0.01,
        value_lambda: float = 0.95,
        collect_temperature: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            env=env, planner=planner or MCTSPlanner, model_learning=model_learning or DEFAULT_MCTS_LEARNER,
            propagation=propagation, sample_noise=sample_noise, reward_fn=reward_fn,
            termination_fn=termination_fn, **kwargs,
        )
        if not isinstance(self.planner, MCTSPlanner):
            raise ConfigurationError(
                f"model.planner={type(self.planner).__name__}: MCTSAgent plans with "
                "mbrl_lightning.planners.MCTSPlanner; use PETS for the MPC planners."
            )
        require(value_updates_per_batch >= 0, "model.value_updates_per_batch", value_updates_per_batch,
                "must be zero or positive")
        require(value_lr > 0, "model.value_lr", value_lr, "must be positive")
        require(collect_temperature >= 0, "model.collect_temperature", collect_temperature, "must be zero or positive")
        if collect_temperature > 0:
            self._exploration = RandomUntil(VisitSampling(self.planner, collect_temperature), self.action_spec,
                                            random_phase=self.frames < self.random_frames)
        self.value_lr = value_lr
        self.value_learner: LeafValueLearner | None = None
        if value_updates_per_batch > 0:
            self.value_learner = LeafValueLearner(
                int(self.observation_spec.shape[-1]), hidden_sizes=value_hidden_sizes, gamma=self.planner.gamma,
                tau=value_tau, batch_size=value_batch_size, updates_per_batch=value_updates_per_batch,
                lmbda=value_lambda,
            )
            # A bound method, not the module: the network's weights are stored once, under value_learner.
            self.planner.value_fn = self.value_learner.value
        elif self.planner.rollout_horizon == 0 and self.planner.value_fn is None:
            raise ConfigurationError(
                "model.planner.init_args.rollout_horizon=0 needs model.value_updates_per_batch > 0: "
                "without rollouts or a value network every leaf is worth 0."
            )

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        """Adam over the world model, and over the leaf-value network when there is one."""
        model_optimizer = super().configure_optimizers()
        if self.value_learner is None:
            return model_optimizer
        return [model_optimizer, torch.optim.Adam(self.value_learner.network.parameters(), lr=self.value_lr)]

    def worker_modules(self) -> dict[str, torch.nn.Module]:
        """The world model and, when there is one, the leaf-value network the tree reads."""
        modules = super().worker_modules()
        if self.value_learner is not None:
            modules["value_learner"] = self.value_learner
        return modules

    def update(self, batch: TensorDictBase) -> Metrics:
        """PETS's model update, then TD(lambda) regression steps of the leaf-value network on the same buffer."""
        metrics = super().update(batch)
        if self.value_learner is not None:
            self.value_learner.observe(batch["observation"].reshape(-1, batch["observation"].shape[-1]))
            metrics.update(self.value_learner.train_steps(self.replay_buffer, self.gradient_step(1)))
        return metrics
