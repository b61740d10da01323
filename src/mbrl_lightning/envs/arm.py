"""A planar two-link arm that reaches for a target (MBRL tutorial, slide 11), with its analytic model.

The same torch functions step the gymnasium env and serve planners as a known model, so planning
with :class:`~mbrl_lightning.planners.KnownDynamics` on this env is exact.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

LINK_LENGTHS = (1.0, 0.8)
MAX_JOINT_STEP = 0.1


def arm_tip(angles: Tensor) -> Tensor:
    """Forward kinematics: joint angles ``[..., 2]`` to the tip position ``[..., 2]``."""
    first, second = angles[..., 0], angles[..., 0] + angles[..., 1]
    x = LINK_LENGTHS[0] * torch.cos(first) + LINK_LENGTHS[1] * torch.cos(second)
    y = LINK_LENGTHS[0] * torch.sin(first) + LINK_LENGTHS[1] * torch.sin(second)
    return torch.stack([x, y], -1)


def arm_dynamics(observation: Tensor, action: Tensor) -> Tensor:
    """Observation ``[theta1, theta2, target_x, target_y]``: the joints move by the clipped action."""
    step = action.clamp(-MAX_JOINT_STEP, MAX_JOINT_STEP)
    return torch.cat([observation[..., :2] + step, observation[..., 2:]], -1)


def arm_reward(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """Minus the distance from the tip to the target after the step."""
    return -(arm_tip(next_observation[..., :2]) - next_observation[..., 2:]).norm(dim=-1, keepdim=True)


class PlanarArmReachEnv(gym.Env):
    """Joint-velocity control of a two-link arm; a new reachable target every episode (50 steps)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_JOINT_STEP, MAX_JOINT_STEP, shape=(2,), dtype=np.float32)
        self.state = torch.zeros(4)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start at (pi/4, pi/4) as in the seed; the target lies at a random reachable point."""
        super().reset(seed=seed)
        radius = self.np_random.uniform(0.4, sum(LINK_LENGTHS) - 0.1)
        angle = self.np_random.uniform(-np.pi, np.pi)
        target = torch.tensor([radius * np.cos(angle), radius * np.sin(angle)], dtype=torch.float32)
        self.state = torch.cat([torch.tensor([np.pi / 4, np.pi / 4], dtype=torch.float32), target])
        return self.state.numpy().copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Move the joints; the reward is minus the tip's distance to the target."""
        action_t = torch.as_tensor(action, dtype=torch.float32)
        next_state = arm_dynamics(self.state, action_t)
        reward = float(arm_reward(self.state, action_t, next_state))
        self.state = next_state
        return next_state.numpy().copy(), reward, False, False, {}


gym.register("mbrl_lightning/PlanarArmReach-v0", entry_point=PlanarArmReachEnv, max_episode_steps=50)
