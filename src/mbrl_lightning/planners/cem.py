"""Cross-entropy-method MPC as in PETS (Chua et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchrl.data import TensorSpec

from mbrl_lightning.errors import require
from mbrl_lightning.planners.base import MPCPlanner
from mbrl_lightning.planners.dynamics import PlanningDynamics


class CEMPlanner(MPCPlanner):
    """Fit a diagonal Gaussian over action sequences to the best candidates, ``iterations`` times.

    The standard deviation is bounded so that two deviations stay inside the action box (PETS's
    constrained variance), and the new statistics are blended with the old ones by ``alpha``.

    Args:
        action_spec: derived from the env.
        horizon: planned steps.
        population: sequences sampled per iteration.
        elites: best sequences the Gaussian is refitted to.
        iterations: refits per action.
        alpha: weight of the previous mean/std in each refit (0: replace).
        init_std: initial standard deviation as a fraction of half the action range.
        num_particles: imagined rollouts per sequence.
        gamma: discount of predicted rewards.
        warm_start: start from the previous plan shifted by one step.
        dynamics: set by the algorithm.
    """

    def __init__(
        self,
        action_spec: TensorSpec,
        horizon: int = 15,
        population: int = 400,
        elites: int = 40,
        iterations: int = 5,
        alpha: float = 0.1,
        init_std: float = 0.5,
        num_particles: int = 1,
        gamma: float = 1.0,
        warm_start: bool = True,
        dynamics: PlanningDynamics | None = None,
    ) -> None:
        super().__init__(action_spec, horizon, population, num_particles, gamma, warm_start, dynamics)
        require(1 <= elites <= population, "planner.elites", elites, f"must lie in [1, population={population}]")
        require(iterations >= 1, "planner.iterations", iterations, "must be a positive integer")
        require(0.0 <= alpha < 1.0, "planner.alpha", alpha, "must lie in [0, 1)")
        require(init_std > 0, "planner.init_std", init_std, "must be positive")
        self.elites = elites
        self.iterations = iterations
        self.alpha = alpha
        self.init_std = init_std

    def optimize(self, observation: Tensor, initial_plan: Tensor) -> tuple[Tensor, Tensor]:
        """Iterated elite refits; the final mean is the plan."""
        envs = observation.shape[0]
        mean = initial_plan
        std = (self.init_std * self.half_range).expand_as(mean).clone()
        elite_returns = observation.new_zeros(envs, self.elites)
        for _ in range(self.iterations):
            # Keep +-2 std inside the box, so clipping does not pile samples on the bounds.
            room = torch.minimum(mean - self.low, self.high - mean).clamp_min(0) / 2
            std = torch.minimum(std, room)
            noise = torch.randn(envs, self.population, *mean.shape[1:], device=mean.device)
            candidates = self.clip(mean[:, None] + std[:, None] * noise)
            returns = self.evaluate(observation, candidates)
            elite_returns, index = returns.topk(self.elites, dim=1)
            elite = candidates.gather(1, index[:, :, None, None].expand(-1, -1, *mean.shape[1:]))
            mean = self.alpha * mean + (1 - self.alpha) * elite.mean(1)
            std = self.alpha * std + (1 - self.alpha) * elite.std(1, unbiased=False)
        return mean, elite_returns.mean(1)
