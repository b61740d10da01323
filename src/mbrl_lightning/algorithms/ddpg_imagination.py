"""DDPG with imagination entropy (seed 004): a bonus for states whose imagined futures spread apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import AdditiveGaussianModule

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.ddpg import DDPG
from mbrl_lightning.curiosity.imagination_entropy import ImaginationEntropy
from mbrl_lightning.data import TRANSITION_KEYS
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.world_models.learner import WorldModelLearner

ImaginationFactory = Callable[[int, int], ImaginationEntropy]


class ImaginationDDPG(DDPG):
    """DDPG whose critic targets include the imagination-entropy bonus of each sampled state.

    Each collected batch: the forward model of the ``imagination`` module trains on the real
    replay buffer (a held-out share measures it: ``world_model/*``). Each gradient step: the
    sampled states are imagined ``rollouts`` times for ``horizon`` steps with the actor plus
    Gaussian noise of std ``imagination_noise`` (clamped to the action box), all in one batch;
    the squashed entropy (and optional curiosity) bonus, detached, is added to the sampled
    rewards before TorchRL's DDPGLoss builds the critic target.

    Args:
        env: the environment factory (continuous actions).
        imagination: class called as ``imagination(observation_size, action_size)``; its init
            args (rollouts, horizon, entropy_beta, curiosity_beta, squash, world_model) are the
            imagination keys. Default: :class:`ImaginationEntropy` with seed 004's settings.
        imagination_noise: std of the Gaussian noise on imagined actions, in action units.
        model_lr: Adam learning rate of the forward model (seed 004: 2e-4).
        model_batch_size: transitions per forward-model gradient step.
        model_updates_per_batch: forward-model gradient steps per collected batch.
        validation_fraction: share of real transitions held out to measure the forward model.
        validation_size: capacity of the held-out buffer (newest kept).
        k_step_horizon: longest horizon of the k-step error diagnostics.
        **kwargs: DDPG, OffPolicyActorCritic and RLModule settings.
    """

    def __init__(
        self,
        env: EnvFactory,
        imagination: ImaginationFactory | None = None,
        imagination_noise: float = 0.1,
        model_lr: float = 2e-4,
        model_batch_size: int = 64,
        model_updates_per_batch: int = 64,
        validation_fraction: float = 0.1,
        validation_size: int = 2_000,
        k_step_horizon: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        require(imagination_noise >= 0, "model.imagination_noise", imagination_noise, "must be non-negative")
        require(model_lr > 0, "model.model_lr", model_lr, "must be positive")
        self.model_lr = model_lr
        observation_size = int(self.observation_spec.shape[-1])
        action_size = int(self.action_spec.shape[-1])
        self.imagination = (imagination or ImaginationEntropy)(observation_size, action_size)
        # A constant-sigma TorchRL noise module: the imagined actions' noise does not anneal.
        self.imagination_noise = AdditiveGaussianModule(
            self.action_spec, sigma_init=imagination_noise, sigma_end=imagination_noise, annealing_num_steps=1,
            safe=True,
        )
        self.model_learner = WorldModelLearner(
            self.imagination.world_model, self.replay_buffer, batch_size=model_batch_size,
            updates_per_batch=model_updates_per_batch, validation_fraction=validation_fraction,
            validation_size=validation_size, k_step_horizon=k_step_horizon,
        )

    @property
    def k_step_curve(self) -> torch.Tensor | None:
        """The latest k-step error curve, for the KStepErrorPlot callback."""
        return self.model_learner.k_step_curve

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for actor and critic, Adam for the forward model."""
        return [*super().configure_optimizers(),
                torch.optim.Adam(self.imagination.world_model.parameters(), lr=self.model_lr)]

    def imagination_policy(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The actor plus constant Gaussian noise, clamped to the action box."""
        return self.imagination_noise(self.actor(tensordict))

    # ----------------------------------------------------------------- model and bonus
    def store(self, batch: TensorDictBase) -> None:
        """Store real transitions through the model learner (which flags the held-out share)."""
        self.model_learner.store(batch.select(*TRANSITION_KEYS).reshape(-1))

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Train the forward model and measure it on held-out and newest transitions."""
        metrics = self.model_learner.train(self.gradient_step(2))
        metrics.update(self.model_learner.measure(batch))
        return metrics

    def critic_batch(self, sample: TensorDictBase) -> tuple[TensorDictBase, Metrics]:
        """Replayed transitions whose rewards carry the detached imagination bonus (of the current actor)."""
        sample, metrics = super().critic_batch(sample)
        with set_exploration_type(ExplorationType.RANDOM):
            bonus, bonus_metrics = self.imagination.bonus(sample, self.imagination_policy)
        metrics.update(bonus_metrics)
        sample.set(("next", "reward"), sample["next", "reward"] + bonus.unsqueeze(-1).to(sample["next", "reward"].dtype))
        metrics["imagination/rollouts"] = float(sample.numel() * self.imagination.rollouts)
        return sample, metrics

    # ----------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the model learner's state."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["model_learner"] = self.model_learner.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the DDPG extras and the model learner's state."""
        super().on_load_checkpoint(checkpoint)
        self.model_learner.load_state_dict(checkpoint["mbrl"]["model_learner"])
