"""DQN for Atari frames (seed 004): plain, with imagination entropy, or with forward-model curiosity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.dqn import DQN
from mbrl_lightning.curiosity.imagination_entropy import action_spread, squash
from mbrl_lightning.data.frame_replay import SCALAR_KEYS, FrameStackReplay
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.envs.atari import AtariEnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.nets.conv import AtariQNet, scale_frames
from mbrl_lightning.world_models.conv import ConvWorldModel
from mbrl_lightning.world_models.normalization import RunningNormalizer

QNetFactory = Callable[[int, int], nn.Module]
ConvModelFactory = Callable[[int, int], ConvWorldModel]


class AtariDQN(DQN):
    """Dueling DQN on stacked frames, with optional bonuses from a convolutional forward model.

    The env runs full games with raw scores (what evaluation reports); the training targets use
    clipped rewards (their sign) and treat a lost life as terminal (episodic life). Replay stores
    uint8 frames once (:class:`~mbrl_lightning.data.FrameStackReplay`).

    With a bonus weight above zero, a :class:`~mbrl_lightning.world_models.ConvWorldModel` learns
    to predict the next frame stack, and every collected transition gets a bonus added to its
    training reward, squashed with tanh in units of the score's running mean:

    - ``entropy_beta``: imagination entropy, the spread of the imagined next frames over all
      actions (one imagined step per action): states where the choice matters are rewarded;
    - ``curiosity_beta``: forward-model curiosity, the model's error on the real next frames.

    ``train/env_frames`` (the x-axis) counts agent steps, each ``env.frame_skip`` emulator frames;
    ``train/emulator_frames`` counts the latter.

    Args:
        env: the Atari environment factory.
        q_net: class called as ``q_net(frame_stack, num_actions)``; default dueling Nature CNN.
        world_model: class called as ``world_model(frame_stack, num_actions)``; default ConvWorldModel.
            Built when a bonus weight is positive or when given.
        entropy_beta: weight of the imagination-entropy bonus (0: off).
        curiosity_beta: weight of the forward-model curiosity bonus (0: off).
        model_lr: Adam learning rate of the world model.
        model_batch_size: transitions per world-model gradient step.
        model_updates_per_batch: world-model gradient steps per collected batch.
        clip_rewards: train on the sign of the reward (scores differ by orders of magnitude between games).
        episodic_life: a lost life ends the TD target's episode (the env itself plays on).
        replay_storage: ``memmap`` (files on disk) or ``memory``.
        **kwargs: DQN and RLModule settings (``buffer_size`` counts transitions = agent steps).
    """

    def __init__(
        self,
        env: AtariEnvFactory,
        q_net: QNetFactory | None = None,
        world_model: ConvModelFactory | None = None,
        entropy_beta: float = 0.0,
        curiosity_beta: float = 0.0,
        model_lr: float = 1e-3,
        model_batch_size: int = 32,
        model_updates_per_batch: int = 1,
        clip_rewards: bool = True,
        episodic_life: bool = True,
        replay_storage: StorageKind = "memmap",
        **kwargs: Any,
    ) -> None:
        require(isinstance(env, AtariEnvFactory), "model.env", type(env).__name__, "must be an AtariEnvFactory")
        super().__init__(env=env, q_net=q_net, replay_storage=replay_storage, **kwargs)
        require(entropy_beta >= 0, "model.entropy_beta", entropy_beta, "must be 0 or more")
        require(curiosity_beta >= 0, "model.curiosity_beta", curiosity_beta, "must be 0 or more")
        require(model_lr > 0, "model.model_lr", model_lr, "must be positive")
        self.entropy_beta = entropy_beta
        self.curiosity_beta = curiosity_beta
        self.model_lr = model_lr
        self.model_batch_size = model_batch_size
        self.model_updates_per_batch = model_updates_per_batch
        self.clip_rewards = clip_rewards
        self.episodic_life = episodic_life
        self.num_actions = int(self.action_spec.space.n)
        self.replay_buffer = FrameStackReplay(
            self.hparams.buffer_size, env.num_envs, env.frame_stack, storage=replay_storage
        )
        channels = int(self.observation_spec.shape[-3])
        self.world_model: ConvWorldModel | None = None
        if world_model is not None or entropy_beta > 0 or curiosity_beta > 0:
            self.world_model = (world_model or ConvWorldModel)(channels, self.num_actions)
        # Running means of the raw scores: the tanh squash needs them in comparable units.
        self.entropy_scale = RunningNormalizer(1)
        self.curiosity_scale = RunningNormalizer(1)
        self._bonus_metrics: Metrics = {}
        self._fresh_error: float | None = None  # the model's error on the newest batch, from scoring it

    def build_q_network(self, q_net: QNetFactory | None, num_actions: int) -> nn.Module:
        """``q_net(frame_stack, num_actions)``, its lazy layers sized by one pass over an empty frame."""
        network = (q_net or AtariQNet)(int(self.observation_spec.shape[-3]), num_actions)
        with torch.no_grad():
            network(self.observation_spec.zero().unsqueeze(0))
        return network

    @property
    def q_network(self) -> nn.Module:
        """The online Q-network inside the Q-actor (attention maps read its last conv layer)."""
        return self.q_actor.module[0].module

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        """Adam for the Q-network, and Adam for the world model when there is one."""
        q_optimizer = super().configure_optimizers()
        if self.world_model is None:
            return q_optimizer
        return [q_optimizer, torch.optim.Adam(self.world_model.parameters(), lr=self.model_lr)]

    # ----------------------------------------------------------------- data
    def store(self, batch: TensorDictBase) -> None:
        """Store ``[envs, time]`` transitions with training rewards, episodic-life terminals and bonuses."""
        keys = ["observation", "step_count", ("next", "observation"), *SCALAR_KEYS]
        transitions = batch.select(*keys).clone()
        if self.clip_rewards:
            transitions["next", "reward"] = transitions["next", "reward"].sign()
        if self.episodic_life and "lives" in batch.keys():
            lost = (batch["next", "lives"] < batch["lives"]).reshape(transitions["next", "terminated"].shape)
            transitions["next", "terminated"] = transitions["next", "terminated"] | lost
            transitions["next", "done"] = transitions["next", "done"] | lost
        if self.entropy_beta or self.curiosity_beta:
            flat = transitions.reshape(-1).to(self.device)
            transitions["next", "bonus"] = self.bonus(flat).reshape(*transitions.shape, 1).cpu()
        self.replay_buffer.extend(transitions)

    @torch.no_grad()
    def bonus(self, transitions: TensorDictBase) -> torch.Tensor:
        """Weighted, tanh-squashed imagination entropy and curiosity of new transitions, shape ``[batch]``.

        Scored once, when the transition is collected (as novelty is: on first visit); scoring
        every replayed sample would cost ``num_actions`` model passes per sample and Q step.
        """
        bonus = torch.zeros(transitions.shape[0], device=self.device)
        target = scale_frames(transitions["next", "observation"])
        if self.entropy_beta:
            # One pass imagines every action; the taken action's future also gives the model's error.
            futures = self.world_model.predict_all_actions(transitions["observation"])
            entropy = action_spread(futures)
            taken = futures[torch.arange(futures.shape[0], device=futures.device), transitions["action"].argmax(-1)]
            error = ((taken - target) ** 2).mean((-3, -2, -1))
            self.entropy_scale.update(entropy.unsqueeze(-1))
            squashed = squash(entropy, self.entropy_scale.mean.clamp_min(1e-8).float())
            bonus += self.entropy_beta * squashed
            self._bonus_metrics.update({"imagination/entropy": entropy.mean().item(),
                                        "imagination/bonus": squashed.mean().item()})
        else:
            error = self.world_model.errors(transitions)
        # The model is not trained between scoring and its update: this is the held-out error.
        self._fresh_error = error.mean().item()
        if self.curiosity_beta:
            self.curiosity_scale.update(error.unsqueeze(-1))
            squashed = squash(error, self.curiosity_scale.mean.clamp_min(1e-8).float())
            bonus += self.curiosity_beta * squashed
            self._bonus_metrics.update({"curiosity/intrinsic_reward": squashed.mean().item(),
                                        "curiosity/beta": self.curiosity_beta})
        return bonus

    def before_q_updates(self, batch: TensorDictBase) -> Metrics:
        """Measure the world model on the new batch (not yet trained on), then train it."""
        if self.world_model is None:
            return {}
        val_loss = self._fresh_error
        if val_loss is None:  # a world model without a bonus: no scoring pass measured it
            fresh = batch.reshape(-1).select("observation", "action", ("next", "observation")).to(self.device)
            with torch.no_grad():
                val_loss = self.world_model.errors(fresh).mean().item()
        self._fresh_error = None
        optimize = self.gradient_step(1)
        losses = []
        for _ in range(self.model_updates_per_batch):
            loss = self.world_model.loss(self.replay_buffer.sample(self.model_batch_size).to(self.device))
            optimize(loss["loss_observation"])
            losses.append(loss["loss_observation"].item())
        return {"world_model/val_loss": val_loss, "loss/world_model": sum(losses) / len(losses)}

    def q_batch(self) -> TensorDictBase:
        """Replayed transitions with the bonus added to the reward; fresh noise for noisy heads."""
        reset_noise = getattr(self.q_network, "reset_noise", None)
        if reset_noise is not None:
            reset_noise()
        transitions = self.replay_buffer.sample(self.batch_size).to(self.device)
        if ("next", "bonus") in transitions.keys(True):
            transitions["next", "reward"] = transitions["next", "reward"] + transitions["next", "bonus"]
        return transitions

    def update(self, batch: TensorDictBase) -> Metrics:
        """The DQN update, plus emulator-frame count and bonus statistics."""
        # Noisy layers add their noise only under RANDOM exploration: the TD loss must see it too.
        with set_exploration_type(ExplorationType.RANDOM):
            metrics = super().update(batch)
        metrics["train/emulator_frames"] = float(self.frames * self.env.frame_skip)
        metrics.update(self._bonus_metrics)
        self._bonus_metrics = {}
        return metrics
