"""The imagination-entropy bonus (seed 004) for any off-policy actor-critic, and its SAC and TD3 learners."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import AdditiveGaussianModule

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.model_based import LearnerFactory, ModelBased
from mbrl_lightning.algorithms.sac import SAC
from mbrl_lightning.algorithms.td3 import TD3
from mbrl_lightning.curiosity.imagination_entropy import ImaginationEntropy, seed_forward_model
from mbrl_lightning.data import TRANSITION_KEYS
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.world_models.learner import WorldModelLearner

ImaginationFactory = Callable[[int, int], ImaginationEntropy]
# The imagination-entropy design's forward model and its training where the YAML gives no ``model_learning`` block.
DEFAULT_LEARNER = partial(WorldModelLearner, world_model=seed_forward_model, lr=2e-4, batch_size=64,
                          updates_per_batch=64, k_step_horizon=5)


class ImaginationBonus(ModelBased):
    """Mixin for an off-policy actor-critic (put it first): critic targets include the imagination-entropy bonus.

    Each collected batch: the forward model (``model_learning``'s world model, which the
    ``imagination`` module imagines with) trains on the real replay buffer (a held-out share
    measures it: ``world_model/*``). Each gradient step: the sampled states are imagined
    ``rollouts`` times for ``horizon`` steps with the actor (sampling, for a stochastic actor)
    plus Gaussian noise of std ``imagination_noise`` (clamped to the action box), all in one
    batch; the squashed entropy (and optional curiosity) bonus, detached, is added to the sampled
    rewards before the TorchRL loss builds the critic target.

    Args:
        env: the environment factory (continuous actions).
        imagination: class called as ``imagination(observation_size, action_size, world_model=...)``;
            its init args (rollouts, horizon, entropy_beta, curiosity_beta, squash) are the
            imagination keys. Default: :class:`ImaginationEntropy` with the imagination-entropy design's settings.
        model_learning: the forward model and how it learns (:class:`WorldModelLearner`); default
            the imagination-entropy design's MLP(256, 256), 64 Adam steps (lr 2e-4) of 64 transitions per batch.
        imagination_noise: std of the Gaussian noise on imagined actions, in action units.
        **kwargs: settings of the actor-critic and of RLModule.
    """

    def __init__(
        self,
        env: EnvFactory,
        imagination: ImaginationFactory | None = None,
        model_learning: LearnerFactory | None = None,
        imagination_noise: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        require(imagination_noise >= 0, "model.imagination_noise", imagination_noise, "must be non-negative")
        # The imagination module holds (and stores) the forward model the learner trains.
        learner = self.attach_model_learner(model_learning, DEFAULT_LEARNER, self.replay_buffer, register=False)
        observation_size = int(self.observation_spec.shape[-1])
        action_size = int(self.action_spec.shape[-1])
        self.imagination = (imagination or ImaginationEntropy)(
            observation_size, action_size, world_model=lambda *_: learner.world_model
        )
        # A constant-sigma TorchRL noise module: the imagined actions' noise does not anneal.
        self.imagination_noise = AdditiveGaussianModule(
            self.action_spec, sigma_init=imagination_noise, sigma_end=imagination_noise, annealing_num_steps=1,
            safe=True,
        )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The actor-critic's optimizers and Adam for the forward model."""
        return self.with_model_optimizer(super().configure_optimizers())

    def imagination_policy(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The actor plus constant Gaussian noise, clamped to the action box."""
        return self.imagination_noise(self.actor(tensordict))

    # ----------------------------------------------------------------- model and bonus
    def store(self, batch: TensorDictBase) -> None:
        """Store real transitions through the model learner (which flags the held-out share)."""
        self.model_learner.store(batch.select(*TRANSITION_KEYS).reshape(-1))

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Train the forward model and measure it on held-out and newest transitions."""
        return self.learn_model(batch)

    def train_batch(self, sample: TensorDictBase) -> tuple[TensorDictBase, Metrics]:
        """Replayed transitions whose rewards carry the detached imagination bonus (of the current actor)."""
        sample, metrics = super().train_batch(sample)
        with set_exploration_type(ExplorationType.RANDOM):
            bonus, bonus_metrics = self.imagination.bonus(sample, self.imagination_policy)
        metrics.update(bonus_metrics)
        reward = sample["next", "reward"]
        # The bonus's size against the environment's reward: what it adds to every critic target.
        metrics["imagination/bonus_to_reward"] = bonus.mean().item() / max(reward.abs().mean().item(), 1e-8)
        sample.set(("next", "reward"), reward + bonus.unsqueeze(-1).to(reward.dtype))
        metrics["imagination/rollouts"] = float(sample.numel() * self.imagination.rollouts)
        return sample, metrics


class ImaginationSAC(ImaginationBonus, SAC):
    """SAC whose critic targets include the imagination-entropy bonus (the actor's own sampling spreads the rollouts)."""


class ImaginationTD3(ImaginationBonus, TD3):
    """TD3 whose critic targets include the imagination-entropy bonus."""
