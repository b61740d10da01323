"""Batched imagined rollouts of a policy inside a world model."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase

from mbrl_lightning.imagination.termination import TerminationFunction
from mbrl_lightning.imagination.trajectory_sampling import Propagation, TrajectorySampler
from mbrl_lightning.world_models import WorldModel


@torch.no_grad()
def imagine(
    world_model: WorldModel,
    policy: Callable[[TensorDictBase], TensorDictBase],
    start: TensorDictBase,
    horizon: int,
    propagation: Propagation = "random_member",
    sample_noise: bool = False,
    done_threshold: float = 0.5,
    termination: TerminationFunction | None = None,
) -> TensorDictBase:
    """Roll ``policy`` forward ``horizon`` steps in ``world_model`` from real start states.

    All starts advance together, each ensemble member on its own rows (trajectory sampling,
    ``trajectory_sampling.py``); the only loop is over time. The result has the keys of real data
    plus whatever the policy writes (log-probabilities, say), ``is_real=False`` and a ``weight``
    that is 1 while the trajectory is alive and 0 after its predicted termination, so learners can
    mask the dead tail.

    Args:
        world_model: the learned dynamics.
        policy: reads ``observation`` and writes ``action``.
        start: real transitions ``[n]``; their ``observation`` entries are the start states.
        horizon: imagined steps per start.
        propagation: ``random_member`` draws an elite per step (TS-1), ``fixed_member`` one per
            trajectory (TS-inf), ``mean`` averages the elites.
        sample_noise: sample next states from the predicted Gaussians (probabilistic models; not under ``mean``).
        done_threshold: predicted termination probability above which a trajectory ends.
        termination: the env's own rule ``(observation, action, next_observation) -> terminated``,
            used instead of the model's predicted termination when given.

    Returns:
        A TensorDict ``[n, horizon]``.
    """
    observation = start["observation"]
    n = observation.shape[0]
    device = observation.device
    # Members drawn per row, independently (TS-1 each step, TS-inf once), as the learners were tuned with.
    sampler = TrajectorySampler(world_model, propagation, assignment="independent", sample_noise=sample_noise)
    sampler.reset(n, device)
    alive = torch.ones(n, 1, dtype=torch.bool, device=device)
    steps = []
    for t in range(horizon):
        acted = policy(TensorDict({"observation": observation}, batch_size=[n], device=device))
        prediction = sampler.step(observation, acted["action"])
        next_observation, reward, done_probability = (
            prediction.next_observation, prediction.reward, prediction.done_probability
        )
        if termination is None:
            terminated = done_probability > done_threshold
        else:
            terminated = termination(observation, acted["action"], next_observation)
        truncated = torch.full_like(terminated, t == horizon - 1) & ~terminated
        # Everything the policy wrote (e.g. log-probabilities for on-policy learners) is kept.
        step = acted.update(
            {
                "is_real": torch.zeros(n, dtype=torch.bool, device=device),
                "weight": alive.squeeze(-1).to(observation.dtype),
                "next": {
                    "observation": next_observation,
                    "reward": reward,
                    "terminated": terminated,
                    "truncated": truncated,
                    "done": terminated | truncated,
                },
            }
        )
        steps.append(step)
        alive = alive & ~terminated
        observation = next_observation
    return torch.stack(steps, dim=1)

