"""Proximal Policy Optimization (Schulman et al. 2017) with TorchRL's ClipPPOLoss."""

from __future__ import annotations

from typing import Any, Literal

from torchrl.objectives import ClipPPOLoss, LossModule

from mbrl_lightning.algorithms.on_policy import OnPolicyModule
from mbrl_lightning.envs import EnvFactory


class PPO(OnPolicyModule):
    """PPO with the clipped surrogate objective, GAE and minibatch epochs.

    Args:
        env: the environment factory.
        clip_epsilon: the ratio clip range.
        normalize_advantage: standardise advantages within each minibatch.
        critic_loss: value regression loss, ``l2`` or ``smooth_l1``.
        **kwargs: actor-critic and RLModule settings (see :class:`OnPolicyModule`).
    """

    def __init__(
        self,
        env: EnvFactory,
        clip_epsilon: float = 0.2,
        normalize_advantage: bool = True,
        critic_loss: Literal["l2", "smooth_l1"] = "l2",
        **kwargs: Any,
    ) -> None:
        self.clip_epsilon = clip_epsilon
        self.normalize_advantage = normalize_advantage
        self.critic_loss = critic_loss
        super().__init__(env=env, **kwargs)

    def make_loss(self) -> LossModule:
        """ClipPPOLoss with per-sample terms, so samples can be weighted."""
        return ClipPPOLoss(
            self.actor, self.critic, clip_epsilon=self.clip_epsilon, entropy_bonus=self.entropy_coeff > 0,
            entropy_coeff=self.entropy_coeff, critic_coeff=self.critic_coeff, loss_critic_type=self.critic_loss,
            normalize_advantage=self.normalize_advantage, reduction="none",
        )
