"""Twin delayed DDPG (Fujimoto et al. 2018) with TorchRL's TD3Loss."""

from __future__ import annotations

from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from torchrl.objectives import LossModule, TD3Loss

from mbrl_lightning.algorithms.off_policy import OffPolicyActorCritic
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require


class TD3(OffPolicyActorCritic):
    """TD3: two critics and the smaller of their targets, smoothed target actions, delayed actor steps.

    Args:
        env: the environment factory (continuous actions).
        policy_noise: std of the Gaussian noise on target actions (in action units).
        noise_clip: bound of that noise.
        num_critics: number of critic copies whose minimum forms the target.
        loss_function: TD-error loss, ``l2`` or ``smooth_l1`` (Huber).
        actor_update_interval: critic gradient steps per actor and target step (the paper's policy delay, 2).
        **kwargs: settings of :class:`OffPolicyActorCritic` and :class:`RLModule`.
    """

    def __init__(
        self,
        env: EnvFactory,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        num_critics: int = 2,
        loss_function: Literal["l2", "smooth_l1"] = "l2",
        actor_update_interval: int = 2,
        **kwargs: Any,
    ) -> None:
        require(num_critics >= 1, "model.num_critics", num_critics, "must be a positive integer")
        require(policy_noise >= 0, "model.policy_noise", policy_noise, "must be non-negative")
        self.policy_noise = policy_noise
        self.noise_clip = noise_clip
        self.num_critics = num_critics
        self.loss_function = loss_function
        super().__init__(env=env, actor_update_interval=actor_update_interval, **kwargs)

    def make_loss(self) -> LossModule:
        """TorchRL's TD3Loss: ``num_critics`` critics initialised apart, target actor and critics."""
        return TD3Loss(
            self.actor, self.critic, action_spec=self.action_spec, num_qvalue_nets=self.num_critics,
            policy_noise=self.policy_noise, noise_clip=self.noise_clip, loss_function=self.loss_function,
            delay_actor=True, delay_qvalue=True,
        )

    def critic_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """TD3Loss's regression of every critic to the clipped double-Q target."""
        return self.loss_module.value_loss(sample)[0]

    def actor_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """TD3Loss's negative first-critic Q of the actor's actions."""
        return self.loss_module.actor_loss(sample)[0]

    def critic_parameters(self) -> TensorDictBase:
        """The stacked parameters of all critics inside the loss."""
        return self.loss_module.qvalue_network_params
