"""Planners that act as collector policies: random shooting, CEM, MPPI and MCTS over a model."""

from mbrl_lightning.planners.base import MPCPlanner
from mbrl_lightning.planners.cem import CEMPlanner
from mbrl_lightning.planners.dynamics import EnsembleDynamics, KnownDynamics, PlanningDynamics
from mbrl_lightning.planners.mcts import MCTSPlanner
from mbrl_lightning.planners.mppi import MPPIPlanner
from mbrl_lightning.planners.random_shooting import RandomShootingPlanner

__all__ = [
    "CEMPlanner",
    "EnsembleDynamics",
    "KnownDynamics",
    "MCTSPlanner",
    "MPCPlanner",
    "MPPIPlanner",
    "PlanningDynamics",
    "RandomShootingPlanner",
]
