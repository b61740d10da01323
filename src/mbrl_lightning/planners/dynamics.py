"""What planners roll candidate actions through: a learned ensemble or a user-given analytic model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from mbrl_lightning.world_models import WorldModel

# ``reward_fn(observation, action, next_observation) -> reward [..., 1]``, as mbrl-lib's ``reward_fn``.
RewardFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# ``termination_fn(observation, action, next_observation) -> terminated [..., 1]`` (bool).
TerminationFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# ``dynamics_fn(observation, action) -> next_observation``: an analytic model.
DynamicsFn = Callable[[Tensor, Tensor], Tensor]
Propagation = Literal["fixed_member", "random_member", "mean"]


class PlanningDynamics(ABC):
    """Steps many imagined particles at once: ``[n, obs]`` and ``[n, act]`` to next state, reward, done.

    It is a plain object, not a module: it only refers to the model it plans with, so the model's
    weights are stored once (in the algorithm), never a second time through the planner.
    """

    def reset(self, num_particles: int, device: torch.device) -> None:
        """Called before each planning rollout of ``num_particles`` particles (fixes TS-inf members)."""

    @abstractmethod
    def step(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Next observation ``[n, obs]``, reward ``[n, 1]`` and termination ``[n, 1]`` (bool)."""


class KnownDynamics(PlanningDynamics):
    """An analytic model: the user's dynamics, reward and termination functions (seed 001's arm, drone).

    Args:
        dynamics_fn: ``(observation, action) -> next_observation`` on batched tensors.
        reward_fn: ``(observation, action, next_observation) -> reward [..., 1]``.
        termination_fn: ``(observation, action, next_observation) -> bool [..., 1]``; None: never ends.
    """

    def __init__(self, dynamics_fn: DynamicsFn, reward_fn: RewardFn, termination_fn: TerminationFn | None = None) -> None:
        self.dynamics_fn = dynamics_fn
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn

    def step(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One analytic step of every particle."""
        next_observation = self.dynamics_fn(observation, action)
        reward = self.reward_fn(observation, action, next_observation)
        terminated = _terminated(self.termination_fn, observation, action, next_observation)
        return next_observation, reward, terminated


class EnsembleDynamics(PlanningDynamics):
    """Trajectory sampling through a learned world model (PETS, Chua et al. 2018).

    Particles are split into as many groups as there are elites and each group goes through its own
    member in one batched ensemble call (``WorldModel.predict_grouped``), so a step costs one pass over
    ``n`` rows, not ``members x n``. ``fixed_member`` keeps a particle on one member for the whole
    rollout (TS-inf), ``random_member`` reshuffles particles across members every step (TS-1),
    ``mean`` moves every particle by the elites' mean prediction.

    Args:
        world_model: the learned dynamics (reward and termination heads used when no function is given).
        propagation: ``fixed_member``, ``random_member`` or ``mean``.
        sample_noise: sample next states from the predicted Gaussians (aleatoric uncertainty).
        reward_fn: known reward function; None uses the model's reward head.
        termination_fn: known termination function; None uses the model's termination head.
        done_threshold: predicted termination probability above which a particle ends.
    """

    def __init__(
        self,
        world_model: WorldModel,
        propagation: Propagation = "fixed_member",
        sample_noise: bool = True,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        done_threshold: float = 0.5,
    ) -> None:
        self.world_model = world_model
        self.propagation = propagation
        self.sample_noise = sample_noise
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.done_threshold = done_threshold
        self._order: Tensor | None = None

    def reset(self, num_particles: int, device: torch.device) -> None:
        """Assign particles to members for a new rollout."""
        self._order = torch.randperm(num_particles, device=device)

    def step(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One model step of every particle."""
        model = self.world_model
        if self.propagation == "mean" or model.num_members == 1:
            prediction = model.predict(observation, action)
            elites = model.elite_indices
            next_observation = prediction.next_observation[elites].mean(0)
            reward = prediction.reward[elites].mean(0)
            done_probability = prediction.done_probability[elites].mean(0)
            std = prediction.next_observation_std
            std = std[elites].mean(0) if std is not None else None
        else:
            next_observation, reward, done_probability, std = self._grouped(observation, action)
        if self.sample_noise and std is not None and self.propagation != "mean":
            next_observation = next_observation + std * torch.randn_like(std)
        if self.reward_fn is not None:
            reward = self.reward_fn(observation, action, next_observation)
        if self.termination_fn is not None:
            terminated = _terminated(self.termination_fn, observation, action, next_observation)
        else:
            terminated = done_probability > self.done_threshold
        return next_observation, reward, terminated

    def _grouped(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Each elite member predicts for its own share of the particles, in one ensemble call."""
        model = self.world_model
        n = observation.shape[0]
        if self._order is None or self._order.numel() != n:
            self.reset(n, observation.device)
        order = torch.randperm(n, device=observation.device) if self.propagation == "random_member" else self._order
        elites = model.elite_indices
        groups = len(elites)
        per_group = -(-n // groups)
        padded = per_group * groups
        # Particle order[i] goes to elite i % groups; padding rows repeat the first particles.
        index = torch.cat([order, order[: padded - n]]) if padded > n else order
        index = index.view(per_group, groups).t()
        members = model.num_members
        obs_in = observation.new_zeros(members, per_group, observation.shape[-1])
        act_in = action.new_zeros(members, per_group, action.shape[-1])
        obs_in[elites] = observation[index]
        act_in[elites] = action[index]
        prediction = model.predict_grouped(obs_in, act_in)
        flat_index = index.reshape(-1)

        def scatter(values: Tensor | None) -> Tensor | None:
            if values is None:
                return None
            out = values.new_empty(n, values.shape[-1])
            # Padding rows write the same particle twice with a second member's value; the first write wins
            # nowhere in particular, which is harmless because padding only duplicates real particles.
            out[flat_index] = values[elites].reshape(-1, values.shape[-1])
            return out

        return (
            scatter(prediction.next_observation),
            scatter(prediction.reward),
            scatter(prediction.done_probability),
            scatter(prediction.next_observation_std),
        )


def _terminated(fn: TerminationFn | None, observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    if fn is None:
        return torch.zeros(*observation.shape[:-1], 1, dtype=torch.bool, device=observation.device)
    return fn(observation, action, next_observation).to(torch.bool).reshape(*observation.shape[:-1], 1)
