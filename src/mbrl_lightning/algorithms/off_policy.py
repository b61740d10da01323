"""The shared part of off-policy actor-critic learners (DDPG, TD3): nets, replay, noise, update loop."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.envs.utils import set_exploration_type
from torchrl.modules import AdditiveGaussianModule, OrnsteinUhlenbeckProcessModule, TanhModule, ValueOperator
from torchrl.objectives import LossModule, ValueEstimators

from mbrl_lightning.algorithms.actor_critic import is_discrete
from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.algorithms.soft_update import ForeachSoftUpdate
from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.nets import MLP

NetFactory = Callable[[int, int], nn.Module]
Exploration = Literal["gaussian", "ou"]


def _default_net(in_features: int, out_features: int) -> nn.Module:
    """Seed 004's actor and critic bodies: two hidden layers of 256 and 128 units."""
    return MLP(in_features, out_features, hidden_sizes=(256, 128))


class OffPolicyActorCritic(RLModule):
    """A deterministic actor and a Q-critic learnt from a replay buffer with Polyak-averaged targets.

    The actor's output goes through tanh and is scaled to the action box (TorchRL ``TanhModule``);
    the critic reads the observation and the action. Collection adds Gaussian or
    Ornstein-Uhlenbeck noise whose scale decays linearly over env frames. Each collected batch
    is stored, then ``updates_per_batch`` gradient steps follow, on transitions drawn from the
    replay buffer in one call; each step computes the subclass's TorchRL loss terms once, steps
    the critic, and every ``actor_update_interval`` steps also steps the actor and moves the
    target networks by ``tau``.

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
        updates_per_batch: gradient steps after each collected batch.
        actor_update_interval: critic gradient steps per actor step (TD3's policy delay).
        exploration: ``gaussian`` (independent noise) or ``ou`` (Ornstein-Uhlenbeck, temporally correlated).
        noise_init: noise scale at the start (Gaussian sigma, or the OU process's scale factor).
        noise_end: noise scale after ``noise_anneal_frames``.
        noise_anneal_frames: env frames over which the noise scale decays linearly.
        ou_theta: mean-reversion rate of the OU process.
        ou_sigma: diffusion of the OU process (multiplied by the annealed scale).
        max_grad_norm: clip each network's gradient norm to this value (None: no clipping).
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    # The loss module's methods that compute the critic and the actor terms (each returns the term
    # and metadata), and where the loss keeps the critic's trainable parameters (TD3's twin
    # critics exist only there, stacked). Calling the terms apart lets a critic-only step (TD3's
    # delayed actor) skip the actor term that the loss's ``forward`` would always compute.
    critic_loss_method = "loss_value"
    actor_loss_method = "loss_actor"
    critic_params_attribute = "value_network_params"

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
        updates_per_batch: int = 64,
        actor_update_interval: int = 1,
        exploration: Exploration = "gaussian",
        noise_init: float = 0.3,
        noise_end: float = 0.05,
        noise_anneal_frames: int = 1_000_000,
        ou_theta: float = 0.15,
        ou_sigma: float = 0.2,
        max_grad_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        if exploration not in ("gaussian", "ou"):
            raise ConfigurationError(f"model.exploration={exploration!r}: allowed values are 'gaussian', 'ou'.")
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
        require(batch_size >= 1, "model.batch_size", batch_size, "must be a positive integer")
        require(buffer_size >= batch_size, "model.buffer_size", buffer_size,
                f"must hold at least one batch (model.batch_size={batch_size})")
        require(updates_per_batch >= 1, "model.updates_per_batch", updates_per_batch, "must be a positive integer")
        require(actor_update_interval >= 1, "model.actor_update_interval", actor_update_interval,
                "must be a positive integer")
        require(noise_init >= 0 and noise_end >= 0, "model.noise_init/noise_end", (noise_init, noise_end),
                "must be non-negative")
        require(noise_anneal_frames >= 1, "model.noise_anneal_frames", noise_anneal_frames, "must be a positive integer")
        self.actor_lr = actor_lr
        self.critic_lr = critic_lr
        self.gamma = gamma
        self.batch_size = batch_size
        self.learning_starts = learning_starts
        self.updates_per_batch = updates_per_batch
        self.actor_update_interval = actor_update_interval
        self.max_grad_norm = max_grad_norm
        self.gradient_steps = 0

        observation_size = int(self.observation_spec.shape[-1])
        action_size = int(self.action_spec.shape[-1])
        body = TensorDictModule((actor_net or _default_net)(observation_size, action_size), ["observation"], ["param"])
        self.actor = TensorDictSequential(body, TanhModule(["param"], ["action"], spec=self.action_spec))
        self.critic = ValueOperator(
            (critic_net or _default_net)(observation_size + action_size, 1), in_keys=["observation", "action"]
        )
        if exploration == "gaussian":
            noise: TensorDictModuleBase = AdditiveGaussianModule(
                self.action_spec, sigma_init=noise_init, sigma_end=noise_end,
                annealing_num_steps=noise_anneal_frames, safe=True,
            )
        else:
            noise = OrnsteinUhlenbeckProcessModule(
                self.action_spec, eps_init=noise_init, eps_end=noise_end, annealing_num_steps=noise_anneal_frames,
                theta=ou_theta, sigma=ou_sigma, safe=True,
            )
        self.exploration = noise
        self._exploration_policy = TensorDictSequential(self.actor, noise)

        self.loss_module = self.make_loss()
        self.loss_module.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        self.target_updater = ForeachSoftUpdate(self.loss_module, tau=tau)
        self.replay_buffer = make_replay_buffer(buffer_size, storage=replay_storage)

    # ----------------------------------------------------------------- what a subclass says
    @abstractmethod
    def make_loss(self) -> LossModule:
        """The TorchRL loss over ``self.actor`` and ``self.critic`` (target networks inside)."""

    # ----------------------------------------------------------------- policies
    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """The actor followed by the annealed exploration noise."""
        return self._exploration_policy

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The noiseless actor."""
        return self.actor

    @property
    def noise_scale(self) -> float:
        """The current exploration-noise scale."""
        noise = self.exploration
        return float(noise.sigma if hasattr(noise, "sigma") else noise.eps)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the actor, Adam for the critic(s), over the parameters the loss module trains."""
        critic_params = getattr(self.loss_module, self.critic_params_attribute)
        # The fused kernel steps all of a network's tensors at once; on one CPU thread it costs a
        # third of the default per-tensor loop (the update rule is the same).
        return [
            torch.optim.Adam(self.loss_module.actor_network_params.flatten_keys().values(), lr=self.actor_lr,
                             fused=True),
            torch.optim.Adam(critic_params.flatten_keys().values(), lr=self.critic_lr, fused=True),
        ]

    # ----------------------------------------------------------------- learning
    def store(self, batch: TensorDictBase) -> None:
        """Add a collected batch to the replay buffer."""
        self.replay_buffer.extend(batch.select(*TRANSITION_KEYS).reshape(-1).cpu())

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Work between storing a batch and the actor-critic steps (model learning); none here."""
        return {}

    def replay_batches(self, count: int) -> TensorDictBase:
        """``count`` batches of ``batch_size`` transitions, drawn in one replay-buffer call: shape [count, batch]."""
        sample = self.replay_buffer.sample(count * self.batch_size).select(*TRANSITION_KEYS)
        return sample.reshape(count, self.batch_size).to(self.device)

    def critic_batch(self, sample: TensorDictBase) -> tuple[TensorDictBase, Metrics]:
        """The transitions of one gradient step (a replayed batch, changed by subclasses), and metrics about them."""
        return sample, {}

    def loss_terms(self, sample: TensorDictBase, with_actor: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The critic term and, when ``with_actor``, the actor term of the TorchRL loss on ``sample``."""
        # The same exploration mode as the loss's own ``forward`` sets around its terms.
        with set_exploration_type(self.loss_module.deterministic_sampling_mode):
            critic_loss, _ = getattr(self.loss_module, self.critic_loss_method)(sample)
            actor_loss = getattr(self.loss_module, self.actor_loss_method)(sample)[0] if with_actor else None
        return critic_loss, actor_loss

    def update(self, batch: TensorDictBase) -> Metrics:
        """Store the batch, anneal the noise, then take ``updates_per_batch`` actor-critic steps."""
        self.store(batch)
        self.exploration.step(batch.numel())
        metrics: Metrics = {"train/noise_scale": self.noise_scale}
        if len(self.replay_buffer) < self.learning_starts:
            return metrics
        metrics.update(self.before_updates(batch))
        actor_optimizer, critic_optimizer = self.optimizer(0), self.optimizer(1)
        # All steps' transitions come from one sample call (uniform with replacement, as per-step
        # calls would be); the replay buffer's per-call overhead is paid once per collected batch.
        batches = self.replay_batches(self.updates_per_batch)
        critic_losses: list[torch.Tensor] = []
        actor_losses: list[torch.Tensor] = []
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for index in range(self.updates_per_batch):
            sample, sample_metrics = self.critic_batch(batches[index])
            update_actor = self.gradient_steps % self.actor_update_interval == 0
            critic_loss, actor_loss = self.loss_terms(sample, update_actor)
            # The actor term reads the critic through detached parameters, so one backward pass
            # serves both networks without the actor's gradient leaking into the critic.
            total = critic_loss if actor_loss is None else critic_loss + actor_loss
            actor_optimizer.zero_grad()
            critic_optimizer.zero_grad()
            self.manual_backward(total)
            if self.max_grad_norm is not None:
                self.clip_gradients(critic_optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
            critic_optimizer.step()
            if update_actor:
                if self.max_grad_norm is not None:
                    self.clip_gradients(actor_optimizer, gradient_clip_val=self.max_grad_norm,
                                        gradient_clip_algorithm="norm")
                actor_optimizer.step()
                actor_losses.append(actor_loss.detach())
                # Targets move with the actor (TD3's delayed target updates; every step for DDPG).
                self.target_updater.step()
            critic_losses.append(critic_loss.detach())
            self.gradient_steps += 1
            for key, value in sample_metrics.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        # Loss values are read once, after the loop, rather than one ``.item()`` per step.
        metrics["loss/critic"] = torch.stack(critic_losses).mean().item()
        if actor_losses:
            metrics["loss/actor"] = torch.stack(actor_losses).mean().item()
        metrics.update({key: total / counts[key] for key, total in sums.items()})
        return metrics

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the gradient-step counter, so delayed actor steps stay on the same steps after resume."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["gradient_steps"] = self.gradient_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base extras and the gradient-step counter."""
        super().on_load_checkpoint(checkpoint)
        self.gradient_steps = checkpoint["mbrl"]["gradient_steps"]
