"""Model-predictive path integral control (Williams et al. 2017), as in mbrl-lib's MPPI optimizer."""

from __future__ import annotations

import torch
from torch import Tensor
from torchrl.data import TensorSpec

from mbrl_lightning.errors import require
from mbrl_lightning.planners.base import MPCPlanner
from mbrl_lightning.planners.dynamics import PlanningDynamics


class MPPIPlanner(MPCPlanner):
    """Perturb the current plan with Gaussian noise and average all samples weighted by ``exp(return / temperature)``.

    Unlike CEM, every sample contributes, so the update is smooth in the returns; the noise scale is fixed.

    Args:
        action_spec: derived from the env.
        horizon: planned steps.
        population: perturbed sequences per iteration.
        iterations: weighted updates per action.
        temperature: softmax temperature over predicted returns (lower: greedier).
        noise_std: perturbation standard deviation as a fraction of half the action range.
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
        iterations: int = 5,
        temperature: float = 1.0,
        noise_std: float = 0.5,
        num_particles: int = 1,
        gamma: float = 1.0,
        warm_start: bool = True,
        dynamics: PlanningDynamics | None = None,
    ) -> None:
        super().__init__(action_spec, horizon, population, num_particles, gamma, warm_start, dynamics)
        require(iterations >= 1, "planner.iterations", iterations, "must be a positive integer")
        require(temperature > 0, "planner.temperature", temperature, "must be positive")
        require(noise_std > 0, "planner.noise_std", noise_std, "must be positive")
        self.iterations = iterations
        self.temperature = temperature
        self.noise_std = noise_std

    def optimize(self, observation: Tensor, initial_plan: Tensor) -> tuple[Tensor, Tensor]:
        """Iterated return-weighted averages of perturbed plans."""
        envs = observation.shape[0]
        mean = initial_plan
        std = self.noise_std * self.half_range
        expected = observation.new_zeros(envs)
        for _ in range(self.iterations):
            noise = torch.randn(envs, self.population, *mean.shape[1:], device=mean.device)
            candidates = self.clip(mean[:, None] + std * noise)
            returns = self.evaluate(observation, candidates)
            weights = torch.softmax(returns / self.temperature, dim=1)
            mean = (weights[:, :, None, None] * candidates).sum(1)
            expected = (weights * returns).sum(1)
        return mean, expected
