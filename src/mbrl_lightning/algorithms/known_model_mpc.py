"""MPC with a model the user gives (the MBRL tutorial's arm and drone): planning without learning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.planners import CEMPlanner, MCTSPlanner, MPCPlanner, PlanningDynamics

PlannerFactory = Callable[[TensorSpec], MPCPlanner | MCTSPlanner]


class KnownModelMPC(RLModule):
    """Act with a planner over an analytic model: nothing is learned, every action is planned.

    The run still collects and evaluates like any algorithm, so its returns and the planner's cost
    land in MLflow next to learned-model runs.

    Args:
        env: the environment factory.
        dynamics: the model, e.g. ``KnownDynamics(dynamics_fn=..., reward_fn=...)`` from the YAML.
        planner: planner class called as ``planner(action_spec)``; default CEM.
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    def __init__(self, env: EnvFactory, dynamics: PlanningDynamics, planner: PlannerFactory | None = None,
                 **kwargs: Any) -> None:
        super().__init__(env=env, **kwargs)
        self.save_hyperparameters(ignore=["env", "dynamics", "planner"], logger=False)
        self.planner = (planner or CEMPlanner)(self.action_spec)
        self.planner.dynamics = dynamics

    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """The planner."""
        return self.planner

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The planner."""
        return self.planner

    def configure_optimizers(self) -> None:
        """Nothing to optimise."""
        return None

    def update(self, batch: TensorDictBase) -> Metrics:
        """No learning: report the planner's cost and predicted return."""
        return self.planner.pop_metrics()
