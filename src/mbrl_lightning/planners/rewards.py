"""Known reward and termination functions of common envs, for planners (as mbrl-lib's ``env/reward_fns``).

Every reward or termination function takes ``(observation, action, next_observation)`` batched on
the leading dims and returns ``[..., 1]``: a float reward or a boolean termination. Pendulum's true
dynamics are here too, to measure what a planner reaches with a perfect model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pendulum_reward(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """``Pendulum-v1``'s reward: ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)`` on the state before the step."""
    cos, sin, theta_dot = observation[..., 0], observation[..., 1], observation[..., 2]
    theta = torch.atan2(sin, cos)
    torque = action[..., 0].clamp(-2.0, 2.0)
    return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * torque**2).unsqueeze(-1)


def pendulum_dynamics(observation: Tensor, action: Tensor) -> Tensor:
    """``Pendulum-v1``'s step (g 10, m 1, l 1, dt 0.05, speed within +-8) on ``[cos, sin, theta_dot]``."""
    theta = torch.atan2(observation[..., 1], observation[..., 0])
    speed = observation[..., 2] + (15.0 * torch.sin(theta) + 3.0 * action[..., 0].clamp(-2.0, 2.0)) * 0.05
    speed = speed.clamp(-8.0, 8.0)
    theta = theta + speed * 0.05
    return torch.stack([torch.cos(theta), torch.sin(theta), speed], -1)


def no_termination(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """Envs that only end by time limit (Pendulum, HalfCheetah in MuJoCo)."""
    return torch.zeros(*next_observation.shape[:-1], 1, dtype=torch.bool, device=next_observation.device)


def cartpole_termination(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """``CartPole-v1``: the cart leaves ``|x| <= 2.4`` or the pole tilts past 12 degrees."""
    x, theta = next_observation[..., 0], next_observation[..., 2]
    return ((x.abs() > 2.4) | (theta.abs() > 12 * 2 * math.pi / 360)).unsqueeze(-1)


def inverted_pendulum_termination(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """``InvertedPendulumBulletEnv-v0`` (observation ``[x, vx, cos, sin, theta_dot]``): ``|theta| > 0.2``."""
    theta = torch.atan2(next_observation[..., 3], next_observation[..., 2])
    return (theta.abs() > 0.2).unsqueeze(-1)


def alive_reward(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """A reward of 1 per step (CartPole, InvertedPendulum): planning then maximises time to termination."""
    return torch.ones(*next_observation.shape[:-1], 1, dtype=next_observation.dtype, device=next_observation.device)
