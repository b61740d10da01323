"""DQN for Atari frames (the imagination-entropy design): plain, with imagination entropy, or with forward-model curiosity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import DistributionalQValueActor, NoisyLinear
from torchrl.objectives import DistributionalDQNLoss, LossModule

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.dqn import DQN
from mbrl_lightning.algorithms.model_based import LearnerFactory, ModelBased
from mbrl_lightning.curiosity.imagination_entropy import action_spread, squash
from mbrl_lightning.data.frame_replay import SCALAR_KEYS, FrameStackReplay
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.envs.atari import AtariEnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.nets.conv import AtariQNet, scale_frames
from mbrl_lightning.nets.noisy import resample_noise_in
from mbrl_lightning.world_models.conv import ConvWorldModel
from mbrl_lightning.world_models.learner import WorldModelLearner
from mbrl_lightning.world_models.normalization import RunningNormalizer

QNetFactory = Callable[[int, int], nn.Module]
# What TorchRL's DistributionalDQNLoss reads of a sample.
C51_KEYS = ("observation", "action", "steps_to_next_obs", "priority_weight", ("next", "observation"),
            ("next", "reward"), ("next", "done"), ("next", "terminated"))
# The imagination-entropy design's Pacman model and its training where the YAML gives no ``model_learning`` block: frame
# stacks are large, so each new batch, measured before the model trains on it, is the held-out data.
DEFAULT_LEARNER = partial(WorldModelLearner, world_model=ConvWorldModel, lr=1e-3, batch_size=32, updates_per_batch=1,
                          validation_fraction=0.0, k_step_horizon=0)


class AtariDQN(ModelBased, DQN):
    """Dueling DQN on stacked frames, with optional bonuses from a convolutional forward model.

    The env runs full games with raw scores (what evaluation reports); the training targets use
    clipped rewards (their sign) and treat a lost life as terminal (episodic life). Replay stores
    uint8 frames once (:class:`~mbrl_lightning.data.FrameStackReplay`).

    With a bonus weight above zero, a :class:`~mbrl_lightning.world_models.ConvWorldModel` learns
    to predict the next frame stack (through the ``model_learning`` block, a
    :class:`~mbrl_lightning.world_models.WorldModelLearner` that measures it on each new batch
    before training on it), and every collected transition gets a bonus added to its
    training reward, squashed with tanh in units of the score's running mean:

    - ``entropy_beta``: imagination entropy, the spread of the imagined next frames over all
      actions (one imagined step per action): states where the choice matters are rewarded;
    - ``curiosity_beta``: forward-model curiosity, the model's error on the real next frames.

    ``train/env_frames`` (the x-axis) counts agent steps, each ``env.frame_skip`` emulator frames;
    ``train/emulator_frames`` counts the latter.

    Args:
        env: the Atari environment factory.
        q_net: class called as ``q_net(frame_stack, num_actions)``; default dueling Nature CNN.
        model_learning: the world model (``world_model(frame_stack, num_actions)``) and how it learns;
            default ConvWorldModel, one Adam step (lr 1e-3) of 32 transitions per batch. Built when
            a bonus weight is positive or when given.
        entropy_beta: weight of the imagination-entropy bonus (0: off).
        curiosity_beta: weight of the forward-model curiosity bonus (0: off).
        clip_rewards: train on the sign of the reward (scores differ by orders of magnitude between games).
        episodic_life: a lost life ends the TD target's episode (the env itself plays on).
        atoms: 1 learns expected Q-values (TorchRL's ``DQNLoss``); more learns each action's return
            distribution on that many evenly spaced returns in ``value_range`` (C51, Bellemare et al.
            2017, with TorchRL's ``DistributionalDQNLoss``: a cross-entropy to the projected n-step
            target, next actions chosen by the online net, so double Q whatever ``double_dqn`` says,
            and ``loss_function`` unused). Rainbow, DER and SPR use 51 atoms in [-10, 10].
        value_range: the lowest and highest return of the atoms' support (clipped rewards keep returns inside).
        replay_storage: ``memmap`` (files on disk) or ``memory``.
        **kwargs: DQN and RLModule settings (``buffer_size`` counts transitions = agent steps).
    """

    def __init__(
        self,
        env: AtariEnvFactory,
        q_net: QNetFactory | None = None,
        model_learning: LearnerFactory | None = None,
        entropy_beta: float = 0.0,
        curiosity_beta: float = 0.0,
        clip_rewards: bool = True,
        episodic_life: bool = True,
        replay_storage: StorageKind = "memmap",
        atoms: int = 1,
        value_range: tuple[float, float] = (-10.0, 10.0),
        **kwargs: Any,
    ) -> None:
        require(isinstance(env, AtariEnvFactory), "model.env", type(env).__name__, "must be an AtariEnvFactory")
        require(isinstance(atoms, int) and (atoms == 1 or atoms >= 2), "model.atoms", atoms,
                "must be 1 (expected Q-values) or at least 2 (a return distribution, C51: 51)")
        require(len(value_range) == 2 and value_range[0] < value_range[1], "model.value_range", value_range,
                "must be [lowest, highest] with lowest < highest")
        # Read by the Q-network, actor and loss that DQN's constructor builds.
        self.atoms = atoms
        self.value_range = (float(value_range[0]), float(value_range[1]))
        super().__init__(env=env, q_net=q_net, replay_storage=replay_storage, **kwargs)
        require(entropy_beta >= 0, "model.entropy_beta", entropy_beta, "must be 0 or more")
        require(curiosity_beta >= 0, "model.curiosity_beta", curiosity_beta, "must be 0 or more")
        self.entropy_beta = entropy_beta
        self.curiosity_beta = curiosity_beta
        self.clip_rewards = clip_rewards
        self.episodic_life = episodic_life
        self.num_actions = int(self.action_spec.space.n)
        self.replay_buffer = FrameStackReplay(
            self.hparams.buffer_size, env.num_envs, env.frame_stack, storage=replay_storage
        )
        self.world_model: ConvWorldModel | None = None
        if model_learning is not None or entropy_beta > 0 or curiosity_beta > 0:
            self.attach_model_learner(model_learning, DEFAULT_LEARNER, self.replay_buffer, self.num_actions,
                                      observation_size=int(self.observation_spec.shape[-3]))
        # Running means of the raw scores: the tanh squash needs them in comparable units.
        self.entropy_scale = RunningNormalizer(1)
        self.curiosity_scale = RunningNormalizer(1)
        self._bonus_metrics: Metrics = {}
        self._fresh_error: float | None = None  # the model's error on the newest batch, from scoring it

    def build_q_network(self, q_net: QNetFactory | None, num_actions: int) -> nn.Module:
        """``q_net(frame_stack, num_actions)`` (``atoms=`` too when distributional), lazy layers sized by one pass."""
        distributional = {"atoms": self.atoms} if self.atoms > 1 else {}
        try:
            network = (q_net or AtariQNet)(int(self.observation_spec.shape[-3]), num_actions, **distributional)
        except TypeError as error:
            # A class_path q_net arrives wrapped by jsonargparse (a ``**kwargs`` partial), so its
            # signature cannot be checked beforehand: the call's own error names the keyword.
            if not distributional or "atoms" not in str(error):
                raise
            require(False, "model.atoms", self.atoms, f"needs a q_net that takes atoms= ({error}); use 1")
        with torch.no_grad():
            network(self.observation_spec.zero().unsqueeze(0))
        return network

    def make_q_actor(self, network: nn.Module) -> TensorDictModuleBase:
        """DQN's greedy actor, or with ``atoms`` > 1 the greedy actor on the distributions' means."""
        if self.atoms == 1:
            return super().make_q_actor(network)
        support = torch.linspace(*self.value_range, self.atoms)
        # The network already returns log-probabilities (its log-softmax runs in float32 under autocast).
        return DistributionalQValueActor(network, support=support, in_keys=["observation"], spec=self.action_spec,
                                         make_log_softmax=False)

    def make_loss(self, loss_function: str, double_dqn: bool, gamma: float) -> LossModule:
        """DQN's loss, or with ``atoms`` > 1 TorchRL's C51 loss (n-step discounts from ``steps_to_next_obs``)."""
        if self.atoms == 1:
            loss = super().make_loss(loss_function, double_dqn, gamma)
        else:
            loss = DistributionalDQNLoss(self.q_actor, gamma=gamma, delay_value=True)
        # TorchRL runs a loss's forward under its deterministic_sampling_mode (DETERMINISTIC by default),
        # which turns noisy layers off: the TD loss would train their means alone and the noise scales
        # would never learn. NoisyNet (Fortunato et al. 2018), Rainbow and SPR learn them through the
        # loss, so the loss runs with the noise the step drew.
        loss.deterministic_sampling_mode = ExplorationType.RANDOM
        return loss

    def action_values(self, observation: torch.Tensor) -> torch.Tensor:
        """Each action's expected return ``[..., num_actions]`` (its distribution's mean with ``atoms`` > 1)."""
        output = self.q_network(observation)
        if self.atoms == 1:
            return output
        return (output.exp() * self.q_actor.support[:, None]).sum(-2)  # the support the greedy actor uses

    @property
    def q_network(self) -> nn.Module:
        """The online Q-network inside the Q-actor (attention maps read its last conv layer)."""
        return self.q_actor.module[0].module

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        """Adam for the Q-network, and Adam for the world model when there is one."""
        q_optimizer = super().configure_optimizers()
        if self.model_learner is None:
            return q_optimizer
        return self.with_model_optimizer([q_optimizer])

    def losses(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """DQN's TD loss; the C51 loss reads only the keys of its target (it clones what it is given)."""
        if self.atoms == 1:
            return super().losses(sample)
        # Without the selection the clone would copy every frame stack of the sample, the latent
        # model's future ones too (a quarter of the C51 loss's extra CPU time in torch.profiler).
        view = sample.select(*C51_KEYS, strict=False)
        loss = self.loss_module(view)["loss"]
        sample.set("td_error", view.get("td_error"))  # the priorities read it
        return {"loss/q": loss}

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
        entropy, error = self.bonus_scores(transitions)
        if entropy is not None:
            self.entropy_scale.update(entropy.unsqueeze(-1))
            squashed = squash(entropy, self.entropy_scale.mean.clamp_min(1e-8).float())
            bonus += self.entropy_beta * squashed
            self._bonus_metrics.update({"imagination/entropy": entropy.mean().item(),
                                        "imagination/bonus": squashed.mean().item()})
        if self.curiosity_beta:
            self.curiosity_scale.update(error.unsqueeze(-1))
            squashed = squash(error, self.curiosity_scale.mean.clamp_min(1e-8).float())
            bonus += self.curiosity_beta * squashed
            self._bonus_metrics.update({"curiosity/intrinsic_reward": squashed.mean().item(),
                                        "curiosity/beta": self.curiosity_beta})
        return bonus

    @torch.no_grad()
    def bonus_scores(self, transitions: TensorDictBase) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Raw imagination entropy (None when its weight is 0) and model error of new transitions, each ``[batch]``."""
        entropy = None
        if self.entropy_beta:
            # One pass imagines every action; the taken action's future also gives the model's error.
            futures = self.world_model.predict_all_actions(transitions["observation"])
            entropy = action_spread(futures)
            taken = futures[torch.arange(futures.shape[0], device=futures.device), transitions["action"].argmax(-1)]
            error = ((taken - scale_frames(transitions["next", "observation"])) ** 2).mean((-3, -2, -1))
        else:
            error = self.world_model.errors(transitions)
        # Kept for the model learner's measurement of this batch (it is not trained in between).
        self._fresh_error = error.mean().item()
        return entropy, error

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Measure the world model on the new batch (not yet trained on), then train it."""
        if self.model_learner is None:
            return {}
        # The model is not trained between scoring and its update: the bonus pass measured it already.
        fresh_error, self._fresh_error = self._fresh_error, None
        return self.learn_model(batch, fresh_loss=fresh_error)

    def exploration_metrics(self) -> Metrics:
        """The exploration rate and, with noisy layers, their mean noise scale (``weight_sigma``), which the TD loss trains."""
        metrics = super().exploration_metrics()
        sigmas = [m.weight_sigma for m in self.q_network.modules() if isinstance(m, NoisyLinear)]
        if sigmas:
            with torch.no_grad():
                metrics["train/noise_sigma"] = float(sum(s.sum() for s in sigmas) / sum(s.numel() for s in sigmas))
        return metrics

    def replay_batches(self, count: int) -> Iterator[TensorDictBase]:
        """Replayed transitions with the bonus added to the reward; fresh noise for noisy heads."""
        reset_noise = getattr(self.q_network, "reset_noise", None)
        target = getattr(self.loss_module, "target_value_network_params", None)
        for _ in range(count):
            if reset_noise is not None:
                reset_noise()
                if target is not None:
                    resample_noise_in(target)  # the target network's own noise (Rainbow)
            transitions = self.replay_buffer.sample(self.batch_size).to(self.device)
            if ("next", "bonus") in transitions.keys(True):
                transitions["next", "reward"] = transitions["next", "reward"] + transitions["next", "bonus"]
            yield transitions

    def update(self, batch: TensorDictBase) -> Metrics:
        """The DQN update, plus emulator-frame count and bonus statistics."""
        # Noisy layers add their noise only under RANDOM exploration: the TD loss must see it too.
        with set_exploration_type(ExplorationType.RANDOM):
            metrics = super().update(batch)
        metrics["train/emulator_frames"] = float(self.frames * self.env.frame_skip)
        metrics.update(self._bonus_metrics)
        self._bonus_metrics = {}
        return metrics
