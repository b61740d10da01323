"""Deep Q-learning (Mnih et al. 2015) with TorchRL's DQNLoss, optional double-DQN targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.modules import EGreedyModule, QValueActor
from torchrl.objectives import DQNLoss, LossModule, SoftUpdate, ValueEstimators

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.eval_policies import EvalEpsilonGreedy, NoisyEvaluation
from mbrl_lightning.algorithms.hard_update import EveryNHardUpdate
from mbrl_lightning.algorithms.replay_learner import ReplayLearner
from mbrl_lightning.algorithms.uniform_warmup import UniformWarmup
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.nets import MLP
from mbrl_lightning.nets.noisy import has_noisy_layers

NetFactory = Callable[[int, int], nn.Module]


class DQN(ReplayLearner):
    """DQN: epsilon-greedy collection into a replay buffer, TD(0) targets from a target network.

    Args:
        env: the environment factory.
        q_net: network class called as ``q_net(observation_size, num_actions)``; default MLP(256, 256).
        lr: Adam learning rate.
        gamma: discount factor.
        batch_size: transitions per gradient step.
        buffer_size: replay-buffer capacity in transitions.
        replay_storage: ``memory`` (RAM) or ``memmap`` (memory-mapped files).
        learning_starts: frames collected before the first gradient step.
        updates_per_batch: gradient steps after each collected batch.
        double_dqn: select next actions with the online net, evaluate them with the target net.
        loss_function: TD-error loss, ``l2`` or ``smooth_l1`` (Huber).
        target_update_interval: gradient steps between two hard copies of the online net into the
            target net: the copy follows gradient steps ``N``, ``2N``, ... (1: after every step). It counts
            gradient steps, not env frames; with ``updates_per_batch`` equal to it, the copy comes once per
            collected batch, after its updates (Stable-Baselines3's schedule when its env-step interval is
            shorter than its ``train_freq``).
        target_tau: when set, Polyak-average the target net with this rate every step instead.
        eps_init: initial exploration rate.
        eps_end: final exploration rate.
        eps_anneal_frames: env frames over which epsilon decays linearly (after the warm-up, with ``uniform``).
        warmup: what acts until ``learning_starts`` transitions are stored: ``policy`` (the Q-actor with
            its epsilon-greedy exploration, annealed from the first frame) or ``uniform`` (uniformly random
            actions, and epsilon's annealing starts when learning does: Dopamine's
            ``linearly_decaying_epsilon``, which DER, SPR and BBF use).
        max_grad_norm: clip the gradient norm to this value (None: no clipping).
        eval_epsilon: probability of a uniform action at each evaluation step (0: greedy; the
            Atari-100k protocol of Dopamine, DER, SPR and BBF: 0.001), drawn from a generator
            seeded per evaluation.
        eval_noise: evaluate with the noisy layers' noise on, drawn afresh at every step (BBF's
            ``eval_noise``, its default) instead of their mean weights; needs noisy layers.
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.

    One update is :class:`ReplayLearner`'s: store, decay epsilon, ``updates_per_batch`` TD steps.
    """

    def __init__(
        self,
        env: EnvFactory,
        q_net: NetFactory | None = None,
        lr: float = 1e-3,
        gamma: float = 0.99,
        batch_size: int = 64,
        buffer_size: int = 100_000,
        replay_storage: StorageKind = "memory",
        learning_starts: int = 1_000,
        updates_per_batch: int = 1,
        double_dqn: bool = False,
        loss_function: Literal["l2", "smooth_l1"] = "l2",
        target_update_interval: int = 500,
        target_tau: float | None = None,
        eps_init: float = 1.0,
        eps_end: float = 0.05,
        eps_anneal_frames: int = 10_000,
        warmup: Literal["policy", "uniform"] = "policy",
        max_grad_norm: float | None = 10.0,
        eval_epsilon: float = 0.0,
        eval_noise: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        # The CLI logs the whole resolved config; the logger must not see hparams again on resume.
        self.save_hyperparameters(ignore=["env", "q_net"], logger=False)
        if not hasattr(self.action_spec, "space") or not hasattr(self.action_spec.space, "n"):
            raise ConfigurationError(
                f"model: DQN needs discrete actions, but {env.env_id} has continuous actions of shape "
                f"{tuple(self.action_spec.shape)}; use an algorithm for continuous actions such as PPO."
            )
        require(target_tau is None or 0.0 < target_tau <= 1.0, "model.target_tau", target_tau, "must lie in (0, 1]")
        require(lr > 0, "model.lr", lr, "must be positive")
        require(target_update_interval >= 1, "model.target_update_interval", target_update_interval,
                "must be a whole number of gradient steps, at least 1")
        require(0.0 < gamma <= 1.0, "model.gamma", gamma, "must lie in (0, 1]")
        require(0.0 <= eval_epsilon <= 1.0, "model.eval_epsilon", eval_epsilon, "must lie in [0, 1]")
        self.eval_epsilon = eval_epsilon
        self.eval_noise = eval_noise
        self.configure_replay(batch_size, buffer_size, replay_storage, learning_starts, updates_per_batch)
        self.lr = lr
        self.max_grad_norm = max_grad_norm

        num_actions = self.action_spec.space.n
        network = self.build_q_network(q_net, num_actions)
        require(not eval_noise or has_noisy_layers(network), "model.eval_noise",
                eval_noise, "needs noisy layers in the Q-network (such as AtariQNet's noisy: true); set it to false")
        self.q_actor = self.make_q_actor(network)
        self.exploration = EGreedyModule(
            self.action_spec, eps_init=eps_init, eps_end=eps_end, annealing_num_steps=eps_anneal_frames
        )
        self._exploration_policy = TensorDictSequential(self.q_actor, self.exploration)
        require(warmup in ("policy", "uniform"), "model.warmup", warmup, "allowed values are 'policy', 'uniform'")
        self.warmup_policy = (
            UniformWarmup(self._exploration_policy, self.action_spec, warming_up=learning_starts > 0)
            if warmup == "uniform" else None
        )

        self.loss_module = self.make_loss(loss_function, double_dqn, gamma)
        if target_tau is not None:
            self.target_updater: EveryNHardUpdate | SoftUpdate = SoftUpdate(self.loss_module, tau=target_tau)
        else:
            self.target_updater = EveryNHardUpdate(self.loss_module, value_network_update_interval=target_update_interval)

    def build_q_network(self, q_net: NetFactory | None, num_actions: int) -> nn.Module:
        """The online Q-network: ``q_net(observation_size, num_actions)``, an MLP by default."""
        return (q_net or MLP)(int(self.observation_spec.shape[-1]), num_actions)

    def make_q_actor(self, network: nn.Module) -> TensorDictModuleBase:
        """The greedy actor over ``network``'s Q-values (TorchRL's ``QValueActor``)."""
        return QValueActor(network, in_keys=["observation"], spec=self.action_spec)

    def make_loss(self, loss_function: str, double_dqn: bool, gamma: float) -> LossModule:
        """TorchRL's ``DQNLoss`` with a target network and TD(0) targets."""
        loss = DQNLoss(self.q_actor, loss_function=loss_function, delay_value=True, double_dqn=double_dqn,
                       action_space=self.action_spec)
        loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        return loss

    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """Greedy Q-actor followed by epsilon-greedy exploration (uniform actions during a ``uniform`` warm-up)."""
        return self._exploration_policy if self.warmup_policy is None else self.warmup_policy

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The greedy Q-actor, with its noise on (``eval_noise``) and epsilon-greedy (``eval_epsilon``) where set.

        Their draws are seeded by the next evaluation's seed.
        """
        seed = self.eval_seed(self.evaluations)
        policy = NoisyEvaluation(self.q_actor, seed) if self.eval_noise else self.q_actor
        return EvalEpsilonGreedy(policy, self.eval_epsilon, seed=seed) if self.eval_epsilon else policy

    @property
    def epsilon(self) -> float:
        """The current exploration rate."""
        return float(self.exploration.eps)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the online Q-network."""
        return torch.optim.Adam(self.q_actor.parameters(), lr=self.lr)

    def anneal_exploration(self, frames: int) -> None:
        """Decay epsilon, except during a ``uniform`` warm-up (the decay starts when learning does)."""
        if self.warmup_policy is None or not bool(self.warmup_policy.warming_up):
            super().anneal_exploration(frames)

    def update(self, batch: TensorDictBase) -> Metrics:
        """The replay update, then the end of a ``uniform`` warm-up once learning has started."""
        metrics = super().update(batch)
        if self.warmup_policy is not None:
            self.warmup_policy.warming_up.fill_(not self.learning_started())
        return metrics

    def exploration_metrics(self) -> Metrics:
        """The current exploration rate."""
        return {"train/epsilon": self.epsilon}

    def losses(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """The loss terms of one gradient step, keyed by metric name; the step minimises their sum."""
        return {"loss/q": self.loss_module(sample)["loss"]}

    def gradient_update(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """One TD step on ``sample``, then the target network's update."""
        optimizer = self.optimizer(0)
        terms = self.losses(sample)
        loss = torch.stack(list(terms.values())).sum()
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.max_grad_norm is not None:
            self.clip_gradient_norm(optimizer, self.max_grad_norm)
        optimizer.step()
        self.target_updater.step()
        return {key: term.detach() for key, term in terms.items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the hard-update counter, so target copies happen on the same steps after resume."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["target_update_counter"] = getattr(self.target_updater, "counter", 0)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base extras and the hard-update counter."""
        super().on_load_checkpoint(checkpoint)
        if hasattr(self.target_updater, "counter"):
            self.target_updater.counter = checkpoint["mbrl"]["target_update_counter"]
