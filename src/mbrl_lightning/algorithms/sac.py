"""Soft actor-critic (Haarnoja et al. 2018) with TorchRL's SACLoss: twin critics, learnt entropy temperature."""

from __future__ import annotations

from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictModuleBase
from torch import nn
from torchrl.modules import ProbabilisticActor, TanhNormal
from torchrl.objectives import LossModule, SACLoss

from mbrl_lightning.algorithms.gsde import GSDEHead, GSDENoise
from mbrl_lightning.algorithms.off_policy import NetFactory, OffPolicyActorCritic
from mbrl_lightning.algorithms.sac_fused import FusedSACTerms
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.nets import MLP


def _sac_net(in_features: int, out_features: int) -> nn.Module:
    """Stable-Baselines3's SAC bodies: two hidden layers of 256 units."""
    return MLP(in_features, out_features, hidden_sizes=(256, 256))


class SAC(OffPolicyActorCritic):
    """SAC: a tanh-Gaussian actor that maximises Q plus entropy, twin critics, an entropy temperature that adapts.

    The actor's sampling is the exploration (no added noise), or with ``use_sde`` gSDE's noise
    matrix held over several env steps (:mod:`mbrl_lightning.algorithms.gsde`). Every gradient
    step regresses both critics to the soft TD target (the smaller target-critic value of a sampled next action, minus
    ``alpha`` times its log-probability), steps the actor on ``alpha * log pi - min Q`` through
    detached critics, moves the target critics by ``tau`` and, unless ``fixed_alpha``, steps
    ``log alpha`` with its own Adam on TorchRL's temperature loss, which drives the policy's
    entropy towards ``target_entropy`` (``auto``: minus the number of action dimensions).
    Defaults are Stable-Baselines3's SAC defaults (lr 3e-4 for all three, batch 256, tau 0.005,
    gamma 0.99, 256-256 nets, one gradient step per frame), with the SAC paper's 10,000
    uniformly random warm-up frames.

    Args:
        env: the environment factory (continuous actions).
        actor_net: class called as ``actor_net(observation_size, 2 * action_size)`` (loc and scale); default MLP(256, 256).
        critic_net: class called as ``critic_net(observation_size + action_size, 1)``; default MLP(256, 256).
        num_critics: critic copies whose minimum forms the target.
        alpha_init: initial entropy temperature.
        alpha_lr: Adam learning rate of ``log alpha``.
        fixed_alpha: keep the temperature at ``alpha_init``.
        target_entropy: the entropy the temperature steers towards; ``auto`` is ``-dim(action)``.
        loss_function: TD-error loss, ``l2`` or ``smooth_l1`` (Huber).
        use_sde: explore with gSDE (:mod:`mbrl_lightning.algorithms.gsde`): noise ``phi(s) @ W`` from the
            actor's last hidden features and a held matrix ``W ~ N(0, sigma^2)`` with learnt ``log sigma``,
            in place of a fresh tanh-Gaussian draw every step; the losses use the gSDE distribution.
        sde_sample_freq: env steps between redraws of ``W`` (also redrawn per env copy at each episode
            start); -1 redraws it once per collected batch (Stable-Baselines3's once per rollout).
        log_std_init: the initial ``log sigma`` of every entry of ``W`` (rl-baselines3-zoo uses -3).
        sde_learn_features: let the gSDE scale's terms (log-probabilities, entropy) train the actor's
            last hidden features too, as Stable-Baselines3's SAC does (``learn_features=True``); false
            detaches them there.
        **kwargs: settings of :class:`OffPolicyActorCritic` and :class:`RLModule`.
    """

    def __init__(
        self,
        env: EnvFactory,
        actor_net: NetFactory | None = None,
        critic_net: NetFactory | None = None,
        num_critics: int = 2,
        alpha_init: float = 1.0,
        alpha_lr: float = 3e-4,
        fixed_alpha: bool = False,
        target_entropy: float | Literal["auto"] = "auto",
        loss_function: Literal["l2", "smooth_l1"] = "l2",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        log_std_init: float = -3.0,
        sde_learn_features: bool = True,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        batch_size: int = 256,
        buffer_size: int = 1_000_000,
        learning_starts: int = 10_000,
        update_to_data: float | None = 1.0,
        **kwargs: Any,
    ) -> None:
        require(num_critics >= 1, "model.num_critics", num_critics, "must be a positive integer")
        require(alpha_init > 0, "model.alpha_init", alpha_init, "must be positive")
        require(alpha_lr > 0, "model.alpha_lr", alpha_lr, "must be positive")
        require(target_entropy == "auto" or isinstance(target_entropy, (int, float)), "model.target_entropy",
                target_entropy, "must be 'auto' or a number")
        require(loss_function in ("l2", "smooth_l1"), "model.loss_function", loss_function,
                "allowed values are 'l2', 'smooth_l1'")
        require(isinstance(sde_sample_freq, int) and (sde_sample_freq == -1 or sde_sample_freq >= 1),
                "model.sde_sample_freq", sde_sample_freq, "must be -1 (once per collected batch) or a positive integer")
        if use_sde and kwargs.get("collector") == "multi_sync":
            raise ConfigurationError("model.use_sde=true: not with model.collector='multi_sync' (its processes "
                                     "would hold their own noise matrices); use 'auto', 'lean' or 'torchrl'.")
        self.use_sde = use_sde
        self.sde_sample_freq = sde_sample_freq
        self.log_std_init = log_std_init
        self.sde_learn_features = sde_learn_features
        self.num_critics = num_critics
        self.alpha_init = alpha_init
        self.alpha_lr = alpha_lr
        self.fixed_alpha = fixed_alpha
        self.target_entropy = target_entropy
        self.loss_function = loss_function
        # The log-probabilities of the last actor step's actions, which the temperature step reads.
        self._log_prob: torch.Tensor | None = None
        super().__init__(
            env=env, actor_net=actor_net or _sac_net, critic_net=critic_net or _sac_net, actor_lr=actor_lr,
            critic_lr=critic_lr, gamma=gamma, tau=tau, batch_size=batch_size, buffer_size=buffer_size,
            learning_starts=learning_starts, update_to_data=update_to_data, **kwargs,
        )
        # SACLoss registers its target-entropy buffer on first use; registering it now keeps the
        # state dict the same before and after training, so a checkpoint loads into a fresh module.
        _ = self.loss_module.target_entropy
        # The same terms without vmap's per-call overhead, where the nets allow (None: SACLoss's own path).
        self.fused_terms = FusedSACTerms.of(self.loss_module, self.actor)

    def make_actor(self, actor_net: NetFactory, observation_size: int, action_size: int) -> TensorDictModuleBase:
        """A tanh-Gaussian over the action box: the net gives loc and (softplus-mapped) scale, or gSDE's loc and scale."""
        if self.use_sde:
            self.gsde_head = GSDEHead(actor_net(observation_size, action_size), self.log_std_init,
                                      learn_features=self.sde_learn_features)
            return ProbabilisticActor(
                TensorDictModule(self.gsde_head, ["observation"], ["loc", "scale", "sde_features"]),
                in_keys=["loc", "scale"], spec=self.action_spec, distribution_class=TanhNormal,
                distribution_kwargs={"low": self.action_spec.space.low, "high": self.action_spec.space.high},
            )
        body = nn.Sequential(actor_net(observation_size, 2 * action_size), NormalParamExtractor())
        return ProbabilisticActor(
            TensorDictModule(body, ["observation"], ["loc", "scale"]), in_keys=["loc", "scale"], spec=self.action_spec,
            distribution_class=TanhNormal,
            distribution_kwargs={"low": self.action_spec.space.low, "high": self.action_spec.space.high},
        )

    def make_exploration(self, *settings: object) -> GSDENoise | None:
        """gSDE's held-matrix noise, or None: the actor explores by sampling."""
        if self.use_sde:
            return GSDENoise(self.gsde_head, self.action_spec, self.sde_sample_freq, copies=self.env.num_envs)
        return None

    @property
    def noise_scale(self) -> float:
        """gSDE's mean sigma over the noise matrix's entries (0 without gSDE: the actor samples)."""
        return float(self.gsde_head.log_std.detach().exp().mean()) if self.use_sde else 0.0

    def make_loss(self) -> LossModule:
        """TorchRL's SACLoss (version 2: no state-value net) with target critics, vmapped over the critic copies."""
        return SACLoss(
            self.actor, self.critic, num_qvalue_nets=self.num_critics, loss_function=self.loss_function,
            alpha_init=self.alpha_init, fixed_alpha=self.fixed_alpha, target_entropy=self.target_entropy,
            action_spec=self.action_spec, delay_qvalue=True,
        )

    def critic_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """SACLoss's regression of every critic to the soft TD target."""
        if self.fused_terms is not None:
            return self.fused_terms.critic_loss(sample)
        return self.loss_module.qvalue_v2_loss(sample)[0]

    def actor_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """SACLoss's ``alpha * log pi - min Q`` of reparameterised actions; keeps their log-probabilities."""
        if self.fused_terms is not None:
            loss, self._log_prob = self.fused_terms.actor_loss(sample)
            return loss
        loss, metadata = self.loss_module.actor_loss(sample)
        self._log_prob = metadata["log_prob"]
        return loss

    def critic_parameters(self) -> TensorDictBase:
        """The stacked parameters of all critics inside the loss."""
        return self.loss_module.qvalue_network_params

    @property
    def alpha(self) -> float:
        """The current entropy temperature."""
        return float(self.loss_module.log_alpha.detach().exp())

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the actor and the critics, and (unless fixed) Adam for ``log alpha``."""
        optimizers = super().configure_optimizers()
        if not self.fixed_alpha:
            optimizers.append(torch.optim.Adam([self.loss_module.log_alpha], lr=self.alpha_lr, fused=True))
        return optimizers

    def further_actor_step_losses(self) -> list[tuple[str, int, torch.Tensor]]:
        """Unless fixed, TorchRL's temperature loss on the actor step's log-probabilities, stepped by Adam 2."""
        if self.fixed_alpha:
            return []
        # It reads the log-probabilities detached and the critic and actor terms read the temperature
        # without a gradient, so sharing their backward pass gives ``log alpha`` the gradient of its own
        # loss alone; stepped after them, this step's critic target and actor loss used the temperature
        # from before it, as in Stable-Baselines3.
        return [("loss/alpha", 2, self.loss_module.alpha_loss(self._log_prob).mean())]

    def gradient_update(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """The base's critic, actor, temperature and target steps; reports the temperature and the entropy."""
        losses = super().gradient_update(sample)
        if "loss/actor" in losses:  # not on a critic-only step (actor_update_interval > 1)
            losses["train/alpha"] = self.loss_module.log_alpha.detach().exp()
            losses["train/entropy"] = -self._log_prob.mean()
        return losses
