"""The shared part of every continuous-action MPC planner: bounds, particles, scoring, warm start."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor
from torchrl.data import TensorSpec

from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.planners.dynamics import PlanningDynamics
from mbrl_lightning.planners.stats import PlanningStats


class MPCPlanner(TensorDictModuleBase, ABC):
    """Model-predictive control: plan an action sequence, act with its first action, replan next step.

    It acts as a collector policy (``forward(td)`` reads ``observation``, writes ``action``). Every env
    copy of the batch is planned for at once: candidate sequences ``[envs, population, horizon, act]``
    are expanded to ``num_particles`` particles each and stepped through the dynamics as one tensor per
    time step. A candidate's score is the mean over its particles of the (discounted) reward summed
    until the particle's predicted termination. The plan of the last step, shifted by one step, seeds
    the next optimisation (warm start); it is forgotten when an episode starts (``step_count == 0``).

    TorchRL's ``CEMPlanner``/``MPPIPlanner`` are not used because they roll out through
    ``EnvBase.rollout`` of a ``ModelBasedEnvBase`` (TensorDict work per step and candidate), start
    every optimisation from mean 0 and std 1 whatever the action bounds (no warm start), and have no
    particles with per-member trajectory sampling; their MPPI weights only the top-k candidates by a
    learned advantage. The update rules here follow PETS (CEM) and Williams et al. 2017 (MPPI).

    Args:
        action_spec: the env's bounded continuous action spec (derived from the env).
        horizon: planned steps.
        population: candidate sequences per optimisation iteration.
        num_particles: imagined rollouts per candidate (trajectory sampling through the ensemble).
        gamma: discount of predicted rewards along the horizon.
        warm_start: start each optimisation from the previous plan shifted by one step.
        dynamics: what candidates are rolled through; the algorithm sets it when it owns the model.
    """

    def __init__(
        self,
        action_spec: TensorSpec,
        horizon: int = 15,
        population: int = 400,
        num_particles: int = 1,
        gamma: float = 1.0,
        warm_start: bool = True,
        dynamics: PlanningDynamics | None = None,
    ) -> None:
        super().__init__()
        require(horizon >= 1, "planner.horizon", horizon, "must be a positive integer")
        require(population >= 1, "planner.population", population, "must be a positive integer")
        require(num_particles >= 1, "planner.num_particles", num_particles, "must be a positive integer")
        require(0.0 < gamma <= 1.0, "planner.gamma", gamma, "must lie in (0, 1]")
        space = getattr(action_spec, "space", None)
        if not hasattr(space, "low") or not hasattr(space, "high"):
            raise ConfigurationError(
                f"planner: continuous MPC needs a bounded continuous action spec, got {type(action_spec).__name__}; "
                "use mbrl_lightning.planners.MCTSPlanner for discrete actions."
            )
        self.in_keys = ["observation"]
        self.out_keys = ["action"]
        self.register_buffer("low", space.low.float().reshape(-1).clone(), persistent=False)
        self.register_buffer("high", space.high.float().reshape(-1).clone(), persistent=False)
        self.action_size = self.low.numel()
        self.horizon = horizon
        self.population = population
        self.num_particles = num_particles
        self.gamma = gamma
        self.warm_start = warm_start
        self.dynamics = dynamics
        self._plans: dict[int, Tensor] = {}
        self.stats = PlanningStats()

    # ----------------------------------------------------------------- what a subclass says
    @abstractmethod
    def optimize(self, observation: Tensor, initial_plan: Tensor) -> tuple[Tensor, Tensor]:
        """Best sequences ``[envs, horizon, act]`` and their predicted returns ``[envs]``."""

    # ----------------------------------------------------------------- shared machinery
    @property
    def center(self) -> Tensor:
        """The middle of the action box, where a cold optimisation starts."""
        return (self.low + self.high) / 2

    @property
    def half_range(self) -> Tensor:
        """Half the width of the action box."""
        return (self.high - self.low) / 2

    def clip(self, actions: Tensor) -> Tensor:
        """Actions projected into the box."""
        return torch.maximum(torch.minimum(actions, self.high), self.low)

    @torch.no_grad()
    def evaluate(self, observation: Tensor, actions: Tensor) -> Tensor:
        """Predicted returns ``[envs, population]`` of candidates ``[envs, population, horizon, act]``."""
        if self.dynamics is None:
            raise RuntimeError("the planner has no dynamics: set planner.dynamics before planning")
        envs, population, horizon, size = actions.shape
        k = self.num_particles
        state = observation[:, None, None, :].expand(envs, population, k, observation.shape[-1]).reshape(-1, observation.shape[-1])
        sequences = actions[:, :, None].expand(envs, population, k, horizon, size).reshape(-1, horizon, size)
        total = self.dynamics.rollout(state, sequences, self.gamma)
        # A model that diverges must not make a candidate look best.
        total = torch.nan_to_num(total, nan=-1e9, posinf=-1e9, neginf=-1e9)
        return total.view(envs, population, k).mean(-1)

    def _initial_plans(self, envs: int, first_step: Tensor | None, device: torch.device) -> Tensor:
        cold = self.center.to(device).expand(envs, self.horizon, self.action_size).clone()
        plan = self._plans.get(envs)
        if not self.warm_start or plan is None:
            return cold
        if first_step is not None:
            plan = torch.where(first_step.reshape(envs, 1, 1), cold, plan)
        return plan

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Plan for every env copy and write the first action of each plan."""
        started = time.perf_counter()
        observation = tensordict.get("observation")
        batch_shape = observation.shape[:-1]
        flat = observation.reshape(-1, observation.shape[-1]).float()
        envs = flat.shape[0]
        first_step = None
        if "step_count" in tensordict.keys():
            first_step = tensordict.get("step_count").reshape(envs) == 0
        initial = self._initial_plans(envs, first_step, flat.device)
        plan, predicted = self.optimize(flat, initial)
        plan = self.clip(plan)
        # Shift by one step; the new last step starts from the middle of the box.
        self._plans[envs] = torch.cat([plan[:, 1:], self.center.expand(envs, 1, self.action_size)], 1)
        action = plan[:, 0].reshape(*batch_shape, self.action_size)
        tensordict.set("action", action.to(observation.dtype))
        self.stats.record(time.perf_counter() - started, envs, float(predicted.mean()))
        return tensordict

    def reset(self) -> None:
        """Forget the warm-start plans."""
        self._plans.clear()

    def pop_metrics(self) -> dict[str, float]:
        """``planner/*`` metrics since the last call: seconds per action, predicted return."""
        return self.stats.pop_metrics()
