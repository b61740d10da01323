"""Random-shooting MPC (MBRL tutorial, slide 9): the best of many uniformly sampled action sequences."""

from __future__ import annotations

import torch
from torch import Tensor

from mbrl_lightning.planners.base import MPCPlanner


class RandomShootingPlanner(MPCPlanner):
    """Sample ``population`` sequences uniformly in the action box, keep the best one.

    With warm start, the previous plan (shifted) is one of the candidates, so a good plan is never lost
    to an unlucky draw.

    Args:
        action_spec: derived from the env.
        horizon: planned steps.
        population: sampled sequences.
        num_particles: imagined rollouts per sequence.
        gamma: discount of predicted rewards.
        warm_start: keep the shifted previous plan among the candidates.
        dynamics: set by the algorithm.
    """

    def optimize(self, observation: Tensor, initial_plan: Tensor) -> tuple[Tensor, Tensor]:
        """One round of uniform samples; the argmax."""
        envs = observation.shape[0]
        shape = (envs, self.population, self.horizon, self.action_size)
        candidates = self.low + (self.high - self.low) * torch.rand(shape, device=observation.device)
        if self.warm_start:
            candidates[:, 0] = initial_plan
        returns = self.evaluate(observation, candidates)
        best = returns.argmax(1)
        rows = torch.arange(envs, device=observation.device)
        return candidates[rows, best], returns[rows, best]
