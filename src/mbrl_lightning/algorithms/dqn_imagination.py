"""DQN with a learned imagination model (seed 000, done properly): Dyna-style imagined transitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.dqn import DQN
from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.imagination import Propagation, imagine
from mbrl_lightning.world_models import MLPWorldModel, WorldModel
from mbrl_lightning.world_models.learner import WorldModelLearner

WorldModelFactory = Callable[[int, int], WorldModel]


class ImaginationDQN(DQN):
    """DQN whose Q-updates also learn from transitions imagined by a world model.

    Each collected batch: the world model trains on the real replay buffer (a held-out fraction
    measures it), then the exploration policy is rolled out in the model from real start states,
    and the imagined transitions go to their own buffer. Every Q step mixes real and imagined
    transitions. With ``imagined_targets`` the TD targets of real samples use the model's
    predicted next state and reward (the variant of seed 000).

    Args:
        env: the environment factory.
        world_model: class called as ``world_model(observation_size, action_size)``; default MLP.
        model_lr: Adam learning rate of the world model.
        model_batch_size: transitions per world-model gradient step.
        model_updates_per_batch: world-model gradient steps per collected batch.
        validation_fraction: fraction of real transitions held out to measure the world model.
        validation_size: capacity of the held-out buffer (newest transitions kept).
        imagination_starts: real start states rolled out per collected batch.
        imagination_horizon: imagined steps per start.
        imagined_buffer_size: capacity of the imagined-transition buffer.
        imagined_fraction: share of every Q batch drawn from imagined transitions.
        min_confidence: imagination is used only when the model's confidence reaches this.
        propagation: ensemble propagation of imagined rollouts.
        imagined_targets: compute TD targets of real samples from model-predicted next states.
        k_step_horizon: longest horizon of the k-step error diagnostics.
        **kwargs: DQN and RLModule settings.
    """

    def __init__(
        self,
        env: EnvFactory,
        world_model: WorldModelFactory | None = None,
        model_lr: float = 1e-3,
        model_batch_size: int = 256,
        model_updates_per_batch: int = 20,
        validation_fraction: float = 0.1,
        validation_size: int = 2_000,
        imagination_starts: int = 256,
        imagination_horizon: int = 1,
        imagined_buffer_size: int = 50_000,
        imagined_fraction: float = 0.5,
        min_confidence: float = 0.0,
        propagation: Propagation = "random_member",
        imagined_targets: bool = False,
        k_step_horizon: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        require(0.0 <= imagined_fraction < 1.0, "model.imagined_fraction", imagined_fraction, "must lie in [0, 1)")
        require(imagination_horizon >= 1, "model.imagination_horizon", imagination_horizon, "must be a positive integer")
        require(model_lr > 0, "model.model_lr", model_lr, "must be positive")
        self.model_lr = model_lr
        self.imagination_starts = imagination_starts
        self.imagination_horizon = imagination_horizon
        self.imagined_fraction = imagined_fraction
        self.min_confidence = min_confidence
        self.propagation = propagation
        self.imagined_targets = imagined_targets

        action_size = int(self.action_spec.shape[-1])
        self.world_model = (world_model or MLPWorldModel)(int(self.observation_spec.shape[-1]), action_size)
        # The world model learns from the Q-learner's own replay buffer (held-out share flagged).
        self.model_learner = WorldModelLearner(
            self.world_model, self.replay_buffer, batch_size=model_batch_size, updates_per_batch=model_updates_per_batch,
            validation_fraction=validation_fraction, validation_size=validation_size, k_step_horizon=k_step_horizon,
        )
        self.imagined_buffer = make_replay_buffer(imagined_buffer_size)
        self.imagined_frames = 0

    @property
    def confidence(self) -> float:
        """The world model's latest held-out confidence, ``exp(-val_loss)``."""
        return self.model_learner.confidence

    @property
    def k_step_curve(self) -> torch.Tensor | None:
        """The latest k-step error curve, for the KStepErrorPlot callback."""
        return self.model_learner.k_step_curve

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the Q-network, Adam for the world model."""
        return [super().configure_optimizers(), torch.optim.Adam(self.world_model.parameters(), lr=self.model_lr)]

    def checkpointed_buffers(self) -> dict[str, ReplayBuffer]:
        """Real, held-out and imagined transitions."""
        return {**super().checkpointed_buffers(), "imagined": self.imagined_buffer}

    # ----------------------------------------------------------------- model and imagination
    def store(self, batch: TensorDictBase) -> None:
        """Store real transitions through the model learner (which flags the held-out share)."""
        self.model_learner.store(batch.select(*TRANSITION_KEYS).reshape(-1))

    def before_q_updates(self, batch: TensorDictBase) -> Metrics:
        """Train the world model, measure it, and imagine transitions for the Q updates."""
        metrics = self.model_learner.train(self.gradient_step(1))
        metrics.update(self.model_learner.measure(batch))
        if self.imagined_fraction > 0 and self.confidence >= self.min_confidence:
            metrics.update(self.imagine_transitions())
        return metrics

    def imagine_transitions(self) -> Metrics:
        """Roll the exploration policy out in the model from real states; keep the live steps."""
        start = self.replay_buffer.sample(self.imagination_starts).to(self.device)
        with set_exploration_type(ExplorationType.RANDOM):
            rollout = imagine(self.world_model, self.exploration_policy, start, self.imagination_horizon,
                              propagation=self.propagation)
        alive = rollout.reshape(-1)
        alive = alive[alive["weight"] > 0]
        self.imagined_buffer.extend(alive.select(*TRANSITION_KEYS).cpu())
        self.imagined_frames += alive.numel()
        return {
            "imagination/rollouts": float(self.imagination_starts),
            "imagination/frames": float(self.imagined_frames),
            "imagination/mean_length": alive.numel() / self.imagination_starts,
            "imagination/confidence_gate": float(self.confidence >= self.min_confidence),
        }

    def q_batch(self) -> TensorDictBase:
        """Real transitions, optionally with model targets, mixed with imagined ones."""
        imagined_count = int(self.batch_size * self.imagined_fraction) if len(self.imagined_buffer) else 0
        real = self.replay_buffer.sample(self.batch_size - imagined_count)
        real = real.select(*TRANSITION_KEYS).to(self.device)
        if self.imagined_targets:
            with torch.no_grad():
                predicted = self.world_model(real.clone())
            real.set(("next", "observation"), predicted["next", "observation"])
            real.set(("next", "reward"), predicted["next", "reward"])
        if not imagined_count:
            return real
        imagined = self.imagined_buffer.sample(imagined_count).to(self.device)
        return torch.cat([real, imagined.select(*TRANSITION_KEYS)], 0)

    # ----------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the model learner's state and the imagined-frame counter."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["model_learner"] = self.model_learner.state_dict()
        checkpoint["mbrl"]["imagined_frames"] = self.imagined_frames

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the DQN extras, the model learner's state and the imagined-frame counter."""
        super().on_load_checkpoint(checkpoint)
        self.model_learner.load_state_dict(checkpoint["mbrl"]["model_learner"])
        self.imagined_frames = checkpoint["mbrl"]["imagined_frames"]
