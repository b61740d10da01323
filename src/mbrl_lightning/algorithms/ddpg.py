"""Deep deterministic policy gradient (Lillicrap et al. 2016) with TorchRL's DDPGLoss."""

from __future__ import annotations

from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from torchrl.objectives import DDPGLoss, LossModule

from mbrl_lightning.algorithms.off_policy import OffPolicyActorCritic
from mbrl_lightning.envs import EnvFactory


class DDPG(OffPolicyActorCritic):
    """DDPG: the critic regresses TD(0) targets of the target actor and critic; the actor ascends Q.

    Defaults follow the imagination-entropy design (gamma 0.99, tau 0.001, batch 64, replay 200k, actor lr 1e-4,
    critic lr 2e-4, Gaussian noise decaying 0.3 -> 0.05).

    Args:
        env: the environment factory (continuous actions).
        loss_function: TD-error loss, ``l2`` or ``smooth_l1`` (Huber).
        **kwargs: settings of :class:`OffPolicyActorCritic` and :class:`RLModule`.
    """

    def __init__(self, env: EnvFactory, loss_function: Literal["l2", "smooth_l1"] = "l2", **kwargs: Any) -> None:
        self.loss_function = loss_function
        super().__init__(env=env, **kwargs)

    def make_loss(self) -> LossModule:
        """TorchRL's DDPGLoss with target copies of both actor and critic."""
        return DDPGLoss(
            self.actor, self.critic, loss_function=self.loss_function, delay_actor=True, delay_value=True
        )

    def critic_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """DDPGLoss's TD(0) regression of the critic."""
        return self.loss_module.loss_value(sample)[0]

    def actor_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """DDPGLoss's negative Q of the actor's actions."""
        return self.loss_module.loss_actor(sample)[0]

    def critic_parameters(self) -> TensorDictBase:
        """The critic's parameters inside the loss."""
        return self.loss_module.value_network_params
