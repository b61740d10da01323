"""Shared actor-critic machinery of on-policy algorithms: GAE, epochs of minibatches, weighted losses."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.objectives import LossModule
from torchrl.objectives.value import GAE

from mbrl_lightning.algorithms.actor_critic import NetFactory, make_actor, make_critic
from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.algorithms.minibatches import minibatch_count, minibatch_indices
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.nets import MLP

WEIGHT_KEY = "weight"
# Diagnostics the TorchRL losses report next to their loss terms, logged when present.
DIAGNOSTICS = {"entropy": "train/entropy", "kl_approx": "train/approx_kl", "clip_fraction": "train/clip_fraction"}


def _default_net(in_features: int, out_features: int) -> nn.Module:
    return MLP(in_features, out_features, hidden_sizes=(64, 64), activation=nn.Tanh)


class OnPolicyModule(RLModule):
    """Actor-critic learning from the batch just collected by the current policy.

    Each batch gets GAE advantages, then ``epochs`` passes of shuffled minibatches through the
    loss. A sample may carry a ``weight`` (imagined data does); every loss term is then a
    weighted mean, so weight 0 removes a sample and weight 0.5 halves its influence.

    Args:
        env: the environment factory.
        policy_net: class called as ``policy_net(observation_size, outputs)``; default MLP(64, 64, tanh).
        value_net: class called as ``value_net(observation_size, 1)``; default MLP(64, 64, tanh).
        lr: Adam learning rate.
        anneal_lr: decay the learning rate linearly to 0 over the frame budget.
        gamma: discount factor.
        gae_lambda: GAE bias-variance trade-off.
        epochs: passes over each batch.
        minibatch_size: samples per gradient step (0: the whole batch); under DDP summed over ranks.
        max_grad_norm: gradient-norm clip (None: no clipping).
        entropy_coeff: weight of the entropy bonus.
        critic_coeff: weight of the value loss.
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    def __init__(
        self,
        env: EnvFactory,
        policy_net: NetFactory | None = None,
        value_net: NetFactory | None = None,
        lr: float = 3e-4,
        anneal_lr: bool = False,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        epochs: int = 4,
        minibatch_size: int = 256,
        max_grad_norm: float | None = 0.5,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        require(lr > 0, "model.lr", lr, "must be positive")
        require(0.0 < gamma <= 1.0, "model.gamma", gamma, "must lie in (0, 1]")
        require(0.0 <= gae_lambda <= 1.0, "model.gae_lambda", gae_lambda, "must lie in [0, 1]")
        require(epochs >= 1, "model.epochs", epochs, "must be a positive integer")
        require(minibatch_size >= 0, "model.minibatch_size", minibatch_size, "must be 0 (whole batch) or positive")
        self.lr = lr
        self.anneal_lr = anneal_lr
        self.gamma = gamma
        self.epochs = epochs
        self.minibatch_size = minibatch_size
        self.max_grad_norm = max_grad_norm
        self.entropy_coeff = entropy_coeff
        self.critic_coeff = critic_coeff
        observation_size = int(self.observation_spec.shape[-1])
        self.actor = make_actor(policy_net or _default_net, observation_size, self.action_spec)
        self.critic = make_critic(value_net or _default_net, observation_size)
        self.advantage_module = GAE(gamma=gamma, lmbda=gae_lambda, value_network=self.critic)
        self.loss_module = self.make_loss()

    @abstractmethod
    def make_loss(self) -> LossModule:
        """The TorchRL loss over ``self.actor`` and ``self.critic``, with ``reduction="none"``."""

    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """The stochastic actor (samples actions while collecting)."""
        return self.actor

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The same actor; deterministic evaluation takes its mode."""
        return self.actor

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over actor and critic."""
        return torch.optim.Adam(self.loss_module.parameters(), lr=self.lr, eps=1e-5)

    # ----------------------------------------------------------------- one update
    @torch.no_grad()
    def add_advantages(self, trajectories: TensorDictBase) -> TensorDictBase:
        """GAE advantages and value targets for trajectories ``[..., time]``."""
        return self.advantage_module(trajectories)

    def training_samples(self, batch: TensorDictBase) -> TensorDictBase:
        """The flat samples one update learns from; subclasses add imagined data here."""
        return self.add_advantages(batch).reshape(-1)

    def update(self, batch: TensorDictBase) -> Metrics:
        """Advantages, then ``epochs`` of minibatch steps on the weighted loss."""
        samples = self.training_samples(batch)
        if self.anneal_lr:
            for group in self.optimizer(0).param_groups:
                group["lr"] = self.lr * max(1.0 - self.frames / self.total_frames, 0.0)
        return self.optimize(samples)

    def optimize(self, samples: TensorDictBase) -> Metrics:
        """Gradient steps over shuffled minibatches of ``samples``; returns mean loss terms."""
        optimizer = self.optimizer(0)
        size = samples.numel()
        # Under DDP a minibatch of one process is split over the ranks (DDP averages their gradients).
        minibatch = self.per_rank(self.minibatch_size) or size
        # Ranks may hold different sample counts (imagined samples): all take the largest step count.
        per_epoch = self.max_over_ranks(minibatch_count(size, minibatch))
        totals: dict[str, torch.Tensor] = {}
        steps = 0
        for _ in range(self.epochs):
            for index in minibatch_indices(size, minibatch, per_epoch, samples.device):
                terms = self.weighted_loss_terms(samples[index])
                loss = sum(value for key, value in terms.items() if key.startswith("loss_"))
                optimizer.zero_grad()
                self.manual_backward(loss)
                if self.max_grad_norm is not None:
                    self.clip_gradient_norm(optimizer, self.max_grad_norm)
                optimizer.step()
                for key, value in terms.items():
                    totals[key] = totals.get(key, 0.0) + value.detach()
                steps += 1
        metrics = {f"loss/{key.removeprefix('loss_')}": (value / steps).item() for key, value in totals.items()
                   if key.startswith("loss_")}
        metrics.update({DIAGNOSTICS[key]: (value / steps).item() for key, value in totals.items() if key in DIAGNOSTICS})
        return metrics

    def weighted_loss_terms(self, minibatch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Loss terms of a minibatch, each a (weighted) mean over samples."""
        out = self.loss_module(minibatch)
        weight = minibatch.get(WEIGHT_KEY, None)
        terms = {}
        for key in list(out.keys()):
            if not (key.startswith("loss_") or key in DIAGNOSTICS):
                continue
            value = out[key]
            if value.dim() == 0:
                terms[key] = value
                continue
            value = value.reshape(minibatch.numel(), -1).mean(-1)
            if weight is None or not key.startswith("loss_"):
                terms[key] = value.mean()
            else:
                terms[key] = (value * weight).sum() / weight.sum().clamp_min(1e-8)
        return terms
