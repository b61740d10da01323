"""Advantage actor-critic (Mnih et al. 2016, synchronous) with TorchRL's A2CLoss."""

from __future__ import annotations

from typing import Any, Literal

from torchrl.objectives import A2CLoss, LossModule

from mbrl_lightning.algorithms.on_policy import OnPolicyModule
from mbrl_lightning.envs import EnvFactory


class A2C(OnPolicyModule):
    """A2C: one gradient step on each collected batch with GAE advantages.

    Args:
        env: the environment factory.
        critic_loss: value regression loss, ``l2`` or ``smooth_l1``.
        **kwargs: actor-critic and RLModule settings; ``epochs`` defaults to 1 and
            ``minibatch_size`` to 0 (the whole batch), the A2C update.
    """

    def __init__(self, env: EnvFactory, critic_loss: Literal["l2", "smooth_l1"] = "l2", **kwargs: Any) -> None:
        self.critic_loss = critic_loss
        kwargs.setdefault("epochs", 1)
        kwargs.setdefault("minibatch_size", 0)
        super().__init__(env=env, **kwargs)

    def make_loss(self) -> LossModule:
        """A2CLoss with per-sample terms, so samples can be weighted."""
        return A2CLoss(
            self.actor, self.critic, entropy_bonus=self.entropy_coeff > 0, entropy_coeff=self.entropy_coeff,
            critic_coeff=self.critic_coeff, loss_critic_type=self.critic_loss, reduction="none",
        )
