"""Model-based RL for discrete actions: MCTS over a learned world model."""

from __future__ import annotations

from typing import Any

from mbrl_lightning.algorithms.pets import PETS, PlannerFactory, WorldModelFactory
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.planners import MCTSPlanner
from mbrl_lightning.planners.dynamics import Propagation, RewardFn, TerminationFn
from mbrl_lightning.world_models import MLPWorldModel


class MCTSAgent(PETS):
    """Acts by tree search (UCB1 or PUCT) in a world model it retrains on its real data every batch.

    The loop is PETS's (random frames first, then every action is searched; the model learns from
    the replay buffer after every batch); only the planner and the defaults differ: a deterministic
    MLP model, expanded by its mean prediction, and :class:`~mbrl_lightning.planners.MCTSPlanner`.

    Args:
        env: the environment factory; actions must be discrete.
        planner: planner class called as ``planner(action_spec)``; default MCTS.
        world_model: class called as ``world_model(observation_size, action_size)``; default MLP.
        propagation: how the tree uses an ensemble; ``mean`` keeps tree nodes deterministic.
        sample_noise: sample next states from predicted Gaussians (probabilistic models only).
        reward_fn: known reward function; None: learned.
        termination_fn: known termination function; None: learned.
        **kwargs: the model-learning, budget and evaluation settings of :class:`PETS`.
    """

    def __init__(
        self,
        env: EnvFactory,
        planner: PlannerFactory | None = None,
        world_model: WorldModelFactory | None = None,
        propagation: Propagation = "mean",
        sample_noise: bool = False,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            env=env, planner=planner or MCTSPlanner, world_model=world_model or MLPWorldModel,
            propagation=propagation, sample_noise=sample_noise, reward_fn=reward_fn,
            termination_fn=termination_fn, **kwargs,
        )
        if not isinstance(self.planner, MCTSPlanner):
            raise ConfigurationError(
                f"model.planner={type(self.planner).__name__}: MCTSAgent plans with "
                "mbrl_lightning.planners.MCTSPlanner; use PETS for the MPC planners."
            )
