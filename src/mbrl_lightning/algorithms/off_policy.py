"""The shared part of off-policy actor-critic learners (DDPG, TD3): nets, replay, noise, update loop."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.envs.utils import set_exploration_type
from torchrl.modules import AdditiveGaussianModule, OrnsteinUhlenbeckProcessModule, TanhModule, ValueOperator
from torchrl.objectives import LossModule, ValueEstimators

from mbrl_lightning.algorithms.actor_critic import is_discrete
from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.replay_learner import ReplayLearner
from mbrl_lightning.algorithms.soft_update import ForeachSoftUpdate
from mbrl_lightning.algorithms.uniform_warmup import UniformWarmup
from mbrl_lightning.data import TRANSITION_KEYS
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.nets import MLP
from mbrl_lightning.nets.normalized_input import NormalizedInput
from mbrl_lightning.world_models.normalization import RunningNormalizer

NetFactory = Callable[[int, int], nn.Module]
Exploration = Literal["gaussian", "ou"]
Warmup = Literal["uniform", "policy"]


def _default_net(in_features: int, out_features: int) -> nn.Module:
    """The imagination-entropy design's actor and critic bodies: two hidden layers of 256 and 128 units."""
    return MLP(in_features, out_features, hidden_sizes=(256, 128))


class OffPolicyActorCritic(ReplayLearner):
    """An actor and a Q-critic learnt from a replay buffer with Polyak-averaged targets.

    By default the actor is deterministic: its output goes through tanh and is scaled to the
    action box (TorchRL ``TanhModule``), and collection adds Gaussian or Ornstein-Uhlenbeck noise
    whose scale decays linearly over env frames. A subclass with a stochastic actor (SAC's
    tanh-Gaussian) overrides :meth:`make_actor` and returns None from :meth:`make_exploration`.
    The critic reads the observation and the action. One update is :class:`ReplayLearner`'s: the
    batch is stored, then ``updates_per_batch`` gradient steps follow, on transitions drawn from
    the replay buffer in one call; each step computes the subclass's loss terms
    (:meth:`critic_loss`, :meth:`actor_loss`) once, steps the critic, and every
    ``actor_update_interval`` steps also steps the actor and moves the target networks by ``tau``.

    Args:
        env: the environment factory (continuous actions).
        actor_net: class called as ``actor_net(observation_size, action_size)``; default MLP(256, 128).
        critic_net: class called as ``critic_net(observation_size + action_size, 1)``; default MLP(256, 128).
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the critic.
        gamma: discount factor.
        tau: Polyak rate of the target networks per actor step (every gradient step when
            ``actor_update_interval`` is 1).
        batch_size: transitions per gradient step.
        buffer_size: replay-buffer capacity in transitions.
        replay_storage: ``memory`` (RAM) or ``memmap`` (memory-mapped files).
        learning_starts: frames collected before the first gradient step.
        warmup: what acts until ``learning_starts`` transitions are stored: ``uniform`` (uniformly
            random actions inside the action box, as Stable-Baselines3 and the TD3 and SAC papers
            do) or ``policy`` (the untrained actor and its exploration, the imagination-entropy design's).
        updates_per_batch: gradient steps after each collected batch (when ``update_to_data`` is None).
        update_to_data: gradient steps per collected frame (the update-to-data ratio); replaces
            ``updates_per_batch`` when set. A fractional remainder carries over to the next batch.
        actor_update_interval: critic gradient steps per actor step (TD3's policy delay).
        critic_first: step the critics before the actor's loss is computed, so the actor climbs the
            critics of this step (Stable-Baselines3's and the TD3 paper's order; two backward passes).
            False computes every term from the same parameters and shares one backward pass
            (as TorchRL's SACLoss computes its terms in one call).
        exploration: ``gaussian`` (independent noise) or ``ou`` (Ornstein-Uhlenbeck, temporally correlated).
        noise_init: noise scale at the start (Gaussian sigma, or the OU process's scale factor).
        noise_end: noise scale after ``noise_anneal_frames``.
        noise_anneal_frames: env frames over which the noise scale decays linearly.
        ou_theta: mean-reversion rate of the OU process.
        ou_sigma: diffusion of the OU process (multiplied by the annealed scale).
        max_grad_norm: clip each network's gradient norm to this value (None: no clipping).
        observation_norm: standardise the observations the actor and critic read by their running
            mean and standard deviation over all collected frames (a module buffer, so in every
            checkpoint); the replay keeps raw observations, normalised with the current statistics
            when sampled, as Stable-Baselines3's VecNormalize does.
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    def __init__(
        self,
        env: EnvFactory,
        actor_net: NetFactory | None = None,
        critic_net: NetFactory | None = None,
        actor_lr: float = 1e-4,
        critic_lr: float = 2e-4,
        gamma: float = 0.99,
        tau: float = 0.001,
        batch_size: int = 64,
        buffer_size: int = 200_000,
        replay_storage: StorageKind = "memory",
        learning_starts: int = 1_000,
        warmup: Warmup = "uniform",
        updates_per_batch: int = 64,
        update_to_data: float | None = None,
        actor_update_interval: int = 1,
        critic_first: bool = False,
        exploration: Exploration = "gaussian",
        noise_init: float = 0.3,
        noise_end: float = 0.05,
        noise_anneal_frames: int = 1_000_000,
        ou_theta: float = 0.15,
        ou_sigma: float = 0.2,
        max_grad_norm: float | None = None,
        observation_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        if warmup not in ("uniform", "policy"):
            raise ConfigurationError(f"model.warmup={warmup!r}: allowed values are 'uniform', 'policy'.")
        if update_to_data is not None and not update_to_data > 0:
            raise ConfigurationError(
                f"model.update_to_data={update_to_data}: must be a positive number of gradient steps per frame, or null."
            )
        if exploration not in ("gaussian", "ou"):
            raise ConfigurationError(f"model.exploration={exploration!r}: allowed values are 'gaussian', 'ou'.")
        if observation_norm and kwargs.get("collector") == "multi_sync":
            raise ConfigurationError("model.observation_norm=true: not with model.collector='multi_sync' "
                                     "(its processes would act on stale statistics); use 'auto', 'lean' or 'torchrl'.")
        if exploration == "ou":
            # The OU process restarts with every episode, so the env must flag episode starts.
            env.track_episode_starts = True
        super().__init__(env=env, **kwargs)
        self.save_hyperparameters(ignore=["env", "actor_net", "critic_net"], logger=False)
        if is_discrete(self.action_spec):
            raise ConfigurationError(
                f"model: {type(self).__name__} needs continuous actions, but {env.env_id} has discrete ones; "
                "use DQN or PPO."
            )
        require(actor_lr > 0, "model.actor_lr", actor_lr, "must be positive")
        require(critic_lr > 0, "model.critic_lr", critic_lr, "must be positive")
        require(0.0 < gamma <= 1.0, "model.gamma", gamma, "must lie in (0, 1]")
        require(0.0 < tau <= 1.0, "model.tau", tau, "must lie in (0, 1]")
        self.configure_replay(batch_size, buffer_size, replay_storage, learning_starts, updates_per_batch)
        require(actor_update_interval >= 1, "model.actor_update_interval", actor_update_interval,
                "must be a positive integer")
        require(noise_init >= 0 and noise_end >= 0, "model.noise_init/noise_end", (noise_init, noise_end),
                "must be non-negative")
        require(noise_anneal_frames >= 1, "model.noise_anneal_frames", noise_anneal_frames, "must be a positive integer")
        self.actor_lr = actor_lr
        self.critic_lr = critic_lr
        self.gamma = gamma
        self.actor_update_interval = actor_update_interval
        self.critic_first = critic_first
        self.max_grad_norm = max_grad_norm
        self.update_to_data = update_to_data
        # Gradient steps owed by the update-to-data ratio but not yet taken (a fraction of one).
        self.update_credit = 0.0
        self.gradient_steps = 0

        observation_size = int(self.observation_spec.shape[-1])
        action_size = int(self.action_spec.shape[-1])
        actor_net, critic_net = actor_net or _default_net, critic_net or _default_net
        # Registered only when used, so that runs without it keep their checkpoints' keys.
        self.observation_normalizer = RunningNormalizer(observation_size) if observation_norm else None
        if self.observation_normalizer is not None:
            actor_net, critic_net = self._normalized(actor_net), self._normalized(critic_net)
        self.actor = self.make_actor(actor_net, observation_size, action_size)
        self.critic = ValueOperator(critic_net(observation_size + action_size, 1), in_keys=["observation", "action"])
        self.exploration_kind = exploration
        self.exploration = self.make_exploration(exploration, noise_init, noise_end, noise_anneal_frames,
                                                 ou_theta, ou_sigma)
        self._exploration_policy = (
            self.actor if self.exploration is None else TensorDictSequential(self.actor, self.exploration)
        )
        self.warmup_policy = (
            UniformWarmup(self._exploration_policy, self.action_spec, warming_up=learning_starts > 0)
            if warmup == "uniform" else None
        )

        self.loss_module = self.make_loss()
        self.loss_module.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        self.target_updater = ForeachSoftUpdate(self.loss_module, tau=tau)

    def _normalized(self, net: NetFactory) -> NetFactory:
        """``net`` reading observations standardised by the learner's running statistics."""
        return lambda inputs, outputs: NormalizedInput(net(inputs, outputs), self.observation_normalizer)

    # ----------------------------------------------------------------- what a subclass says
    @abstractmethod
    def make_loss(self) -> LossModule:
        """The TorchRL loss over ``self.actor`` and ``self.critic`` (target networks inside)."""

    @abstractmethod
    def critic_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """The critic term of the loss on ``sample`` (scalar)."""

    @abstractmethod
    def actor_loss(self, sample: TensorDictBase) -> torch.Tensor:
        """The actor term of the loss on ``sample`` (scalar); it reads the critic through detached parameters."""

    @abstractmethod
    def critic_parameters(self) -> TensorDictBase:
        """The critic parameters the loss trains (TD3's twin critics exist only in the loss, stacked)."""

    def further_actor_step_losses(self) -> list[tuple[str, int, torch.Tensor]]:
        """Loss terms an actor step adds, as ``(metric, optimizer index, loss)``; they join its one backward pass.

        Called after :meth:`actor_loss`; a term's optimizer steps after the actor's. None here (SAC's temperature).
        """
        return []

    def make_actor(self, actor_net: NetFactory, observation_size: int, action_size: int) -> TensorDictModuleBase:
        """The actor: ``actor_net``'s output through tanh, scaled to the action box (deterministic)."""
        body = TensorDictModule(actor_net(observation_size, action_size), ["observation"], ["param"])
        return TensorDictSequential(body, TanhModule(["param"], ["action"], spec=self.action_spec))

    def make_exploration(
        self, kind: Exploration, noise_init: float, noise_end: float, anneal_frames: int, ou_theta: float,
        ou_sigma: float,
    ) -> TensorDictModuleBase | None:
        """The annealed noise added to the actor's actions; a stochastic actor returns None (it explores itself)."""
        if kind == "gaussian":
            return AdditiveGaussianModule(
                self.action_spec, sigma_init=noise_init, sigma_end=noise_end, annealing_num_steps=anneal_frames,
                safe=True,
            )
        return OrnsteinUhlenbeckProcessModule(
            self.action_spec, eps_init=noise_init, eps_end=noise_end, annealing_num_steps=anneal_frames,
            theta=ou_theta, sigma=ou_sigma, safe=True,
        )

    # ----------------------------------------------------------------- policies
    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """The actor followed by the annealed exploration noise (uniform actions during a ``uniform`` warm-up)."""
        return self._exploration_policy if self.warmup_policy is None else self.warmup_policy

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The noiseless actor."""
        return self.actor

    @property
    def noise_scale(self) -> float:
        """The current exploration-noise scale (0 for an actor that explores by sampling)."""
        if self.exploration is None:
            return 0.0
        return float(self.exploration.sigma if self.exploration_kind == "gaussian" else self.exploration.eps)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the actor, Adam for the critic(s), over the parameters the loss module trains."""
        critic_params = self.critic_parameters()
        # The fused kernel steps all of a network's tensors at once; on one CPU thread it costs a
        # third of the default per-tensor loop (the update rule is the same).
        return [
            torch.optim.Adam(self.loss_module.actor_network_params.flatten_keys().values(), lr=self.actor_lr,
                             fused=True),
            torch.optim.Adam(critic_params.flatten_keys().values(), lr=self.critic_lr, fused=True),
        ]

    # ----------------------------------------------------------------- learning
    def exploration_metrics(self) -> Metrics:
        """The current exploration-noise scale."""
        return {"train/noise_scale": self.noise_scale}

    def update(self, batch: TensorDictBase) -> Metrics:
        """Fold the batch into the observation statistics (if kept), update, end the warm-up once learning starts."""
        if self.observation_normalizer is not None:
            self.observation_normalizer.update(batch["observation"])
        metrics = super().update(batch)
        if self.warmup_policy is not None:
            self.warmup_policy.warming_up.fill_(not self.learning_started())
        return metrics

    def updates_due(self, frames: int) -> int:
        """``updates_per_batch``, or ``update_to_data`` steps per new frame (the remainder carried over)."""
        if self.update_to_data is None:
            return self.updates_per_batch
        self.update_credit += self.update_to_data * frames
        steps = int(self.update_credit)
        self.update_credit -= steps
        return steps

    def replay_batches(self, count: int) -> Iterator[TensorDictBase]:
        """``count`` batches of ``batch_size`` transitions, drawn in one replay-buffer call."""
        # Uniform with replacement, as per-step calls would be; the replay buffer's per-call overhead
        # is paid once per collected batch.
        sample = self.replay_buffer.sample(count * self.batch_size).select(*TRANSITION_KEYS)
        if count:
            yield from sample.reshape(count, self.batch_size).to(self.device).unbind(0)

    def gradient_update(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """A critic step and, every ``actor_update_interval`` steps, an actor step and a target update."""
        update_actor = self.gradient_steps % self.actor_update_interval == 0
        if self.critic_first:
            critic_loss = self._terms(sample, critic=True, actor=False)[0]
            losses = self._critic_step(critic_loss, backward=critic_loss)
            if update_actor:
                losses.update(self._actor_step(sample))
        else:
            losses = self._joint_step(sample, update_actor)
        self.gradient_steps += 1
        return losses

    def _terms(self, sample: TensorDictBase, critic: bool, actor: bool) -> tuple[torch.Tensor | None, ...]:
        """The critic and actor terms asked for, under the exploration mode the loss's own ``forward`` sets."""
        # Calling the terms apart lets a critic-only step (TD3's delayed actor) skip the actor term.
        with set_exploration_type(self.loss_module.deterministic_sampling_mode):
            critic_loss = self.critic_loss(sample) if critic else None
            actor_loss = self.actor_loss(sample) if actor else None
        return critic_loss, actor_loss

    def _joint_step(self, sample: TensorDictBase, update_actor: bool) -> dict[str, torch.Tensor]:
        """Critic, actor and further terms from the same parameters, through one backward pass."""
        critic_loss, actor_loss = self._terms(sample, critic=True, actor=update_actor)
        further = self.further_actor_step_losses() if update_actor else []
        # The actor term reads the critic through detached parameters, so one backward pass
        # serves both networks without the actor's gradient leaking into the critic.
        total = critic_loss if actor_loss is None else critic_loss + self._actor_side_total(actor_loss, further)
        losses = self._critic_step(critic_loss, backward=total)
        if update_actor:
            losses.update(self._finish_actor_step(actor_loss, further))
        return losses

    def _critic_step(self, critic_loss: torch.Tensor, backward: torch.Tensor) -> dict[str, torch.Tensor]:
        """Back-propagate ``backward`` (the critic term, or the sum it shares) and step the critics."""
        critic_optimizer = self.optimizer(1)
        critic_optimizer.zero_grad()
        self.manual_backward(backward)
        if self.max_grad_norm is not None:
            self.clip_gradient_norm(critic_optimizer, self.max_grad_norm)
        critic_optimizer.step()
        return {"loss/critic": critic_loss.detach()}

    def _actor_step(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """The actor term on the critics as they are now and its further terms, one backward pass, then their steps."""
        actor_loss = self._terms(sample, critic=False, actor=True)[1]
        further = self.further_actor_step_losses()
        self.manual_backward(self._actor_side_total(actor_loss, further))
        return self._finish_actor_step(actor_loss, further)

    def _actor_side_total(self, actor_loss: torch.Tensor, further: list[tuple[str, int, torch.Tensor]]) -> torch.Tensor:
        """The actor term plus its further terms, with the gradients of their optimizers zeroed for the backward pass."""
        self.optimizer(0).zero_grad()
        total = actor_loss
        for _, index, loss in further:
            total = total + loss
            self.optimizer(index).zero_grad()
        return total

    def _finish_actor_step(self, actor_loss: torch.Tensor,
                           further: list[tuple[str, int, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Step the actor (gradients already in place), move the targets, step the further terms' optimizers."""
        actor_optimizer = self.optimizer(0)
        if self.max_grad_norm is not None:
            self.clip_gradient_norm(actor_optimizer, self.max_grad_norm)
        actor_optimizer.step()
        # Targets move with the actor (TD3's delayed target updates; every step for DDPG).
        self.target_updater.step()
        losses = {"loss/actor": actor_loss.detach()}
        for metric, index, loss in further:
            self.optimizer(index).step()
            losses[metric] = loss.detach()
        return losses

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the gradient-step counter, so delayed actor steps stay on the same steps after resume."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["gradient_steps"] = self.gradient_steps
        checkpoint["mbrl"]["update_credit"] = self.update_credit

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base extras and the gradient-step counter."""
        super().on_load_checkpoint(checkpoint)
        self.gradient_steps = checkpoint["mbrl"]["gradient_steps"]
        self.update_credit = checkpoint["mbrl"].get("update_credit", 0.0)
