"""What planners roll candidate actions through: a learned ensemble or a user-given analytic model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
import torch
from torch import Tensor

from mbrl_lightning.imagination.trajectory_sampling import Propagation, TrajectorySampler
from mbrl_lightning.imagination.member_layout import MemberLayout
from mbrl_lightning.world_models import WorldModel

# ``reward_fn(observation, action, next_observation) -> reward [..., 1]``, as mbrl-lib's ``reward_fn``.
RewardFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# ``termination_fn(observation, action, next_observation) -> terminated [..., 1]`` (bool).
TerminationFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# ``dynamics_fn(observation, action) -> next_observation``: an analytic model.
DynamicsFn = Callable[[Tensor, Tensor], Tensor]


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

    def rollout(self, state: Tensor, actions: Tensor, gamma: float) -> Tensor:
        """Return ``[n]`` of particles ``state [n, obs]`` following ``actions [n, horizon, act]``.

        The discounted rewards are summed until each particle's predicted termination; the step
        that terminates is counted, nothing after it is.
        """
        n, horizon = actions.shape[:2]
        self.reset(n, state.device)
        step = self.stepper(actions)
        total = state.new_zeros(n)
        alive = torch.ones(n, dtype=torch.bool, device=state.device)
        discount = 1.0
        for t in range(horizon):
            state, reward, terminated = step(state, t)
            total += discount * reward.reshape(n) * alive
            alive &= ~terminated.reshape(n)
            discount *= gamma
        return total

    def stepper(self, actions: Tensor) -> Callable[[Tensor, int], tuple[Tensor, Tensor, Tensor]]:
        """``(observation, t) -> step(observation, actions[:, t])`` for one rollout, called after ``reset``.

        A subclass returns a faster function computing the same values (see ``EnsembleDynamics``).
        """
        return lambda observation, t: self.step(observation, actions[:, t])


class KnownDynamics(PlanningDynamics):
    """An analytic model: the user's dynamics, reward and termination functions (the MBRL tutorial's arm, drone).

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

    Particles are shared out evenly over the elites, and consecutive particles (those of one
    candidate) go to different members, so a candidate with as many particles as elites is scored
    through each member once (TS-inf over balanced members, as in PETS). Each member then runs once
    per step, on its own particles (``imagination.TrajectorySampler``, the same implementation
    imagined rollouts use), so a step costs one pass over ``n`` rows, not ``members x n``.
    ``fixed_member`` keeps a particle on its member for the whole rollout (TS-inf),
    ``random_member`` reshuffles particles over the members every step, shares kept even (TS-1),
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
        self.sampler = TrajectorySampler(world_model, propagation, assignment="balanced", sample_noise=sample_noise)
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.done_threshold = done_threshold
        self._layout: tuple[tuple, MemberLayout] | None = None

    def reset(self, num_particles: int, device: torch.device) -> None:
        """Assign particles to members for a new rollout."""
        self.sampler.reset(num_particles, device)

    def step(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One model step of every particle."""
        prediction = self.sampler.step(observation, action)
        return self._outcome(observation, action, prediction.next_observation, lambda: prediction.reward,
                             lambda: prediction.done_probability)

    def _outcome(self, observation: Tensor, action: Tensor, next_observation: Tensor, reward: Callable[[], Tensor],
                 done_probability: Callable[[], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The step's reward and termination: the known functions where given, else the model's heads (read lazily)."""
        reward = self.reward_fn(observation, action, next_observation) if self.reward_fn is not None else reward()
        if self.termination_fn is not None:
            terminated = _terminated(self.termination_fn, observation, action, next_observation)
        else:
            terminated = done_probability() > self.done_threshold
        return next_observation, reward, terminated

    def stepper(self, actions: Tensor) -> Callable[[Tensor, int], tuple[Tensor, Tensor, Tensor]]:
        """Under ``fixed_member``, steps on a member-major layout built once per rollout.

        ``predict_by_member`` sorts the particles by member and scatters them into a padded batch
        at every step, then gathers each prediction back: most of a planning step's time for
        small networks (about 30% of it for ``conf/pendulum_pets.yaml``, ``benchmarks/planning_speed.py
        --profile``). Here the particles' members are fixed for the rollout, so the layout is
        computed once, the whole action sequence is regrouped once, and a step costs one gather
        in and two out. The network sees the very same member-major batch as through
        ``predict_by_member`` and noise is drawn in the same order, so the values are the same
        bits (``tests/test_planners_speed.py`` compares the two).
        """
        model = self.world_model
        # Only balanced fixed members depend on nothing but the particle count and the elites (the cache key).
        if self.propagation != "fixed_member" or self.sampler.assignment != "balanced" or model.num_members == 1:
            return super().stepper(actions)
        layout = self._member_layout(actions.shape[0], actions.device)
        # All members in order: the network's own weights are the same values as their indexed copy.
        members = None if len(layout.members) == model.num_members else layout.members
        grouped_actions = layout.group(actions)

        def step(observation: Tensor, t: int) -> tuple[Tensor, Tensor, Tensor]:
            prediction = model.predict_grouped(layout.group(observation), grouped_actions[:, :, t], members=members)
            next_observation = layout.ungroup(prediction.next_observation)
            std = prediction.next_observation_std
            if self.sampler.sample_noise and std is not None:
                std = layout.ungroup(std)
                next_observation = next_observation + std * torch.randn_like(std)
            return self._outcome(observation, actions[:, t], next_observation, lambda: layout.ungroup(prediction.reward),
                                 lambda: layout.ungroup(prediction.done_probability))

        return step

    def _member_layout(self, n: int, device: torch.device) -> MemberLayout:
        """The layout of this rollout's particles, rebuilt only when ``n`` or the elites change."""
        key = (n, device, tuple(self.world_model.elite_indices.tolist()))
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, MemberLayout.of(self.sampler.members(n, device)))
        return self._layout[1]


def _terminated(fn: TerminationFn | None, observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    if fn is None:
        return torch.zeros(*observation.shape[:-1], 1, dtype=torch.bool, device=observation.device)
    return fn(observation, action, next_observation).to(torch.bool).reshape(*observation.shape[:-1], 1)
