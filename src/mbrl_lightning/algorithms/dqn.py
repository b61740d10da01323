"""Deep Q-learning (Mnih et al. 2015) with TorchRL's DQNLoss, optional double-DQN targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.modules import EGreedyModule, QValueActor
from torchrl.objectives import DQNLoss, HardUpdate, SoftUpdate, ValueEstimators

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.data import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.nets import MLP

NetFactory = Callable[[int, int], nn.Module]


class DQN(RLModule):
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
        target_update_interval: gradient steps between hard target-network copies.
        target_tau: when set, Polyak-average the target net with this rate every step instead.
        eps_init: initial exploration rate.
        eps_end: final exploration rate.
        eps_anneal_frames: env frames over which epsilon decays linearly.
        max_grad_norm: clip the gradient norm to this value (None: no clipping).
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
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
        max_grad_norm: float | None = 10.0,
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
        require(0.0 < gamma <= 1.0, "model.gamma", gamma, "must lie in (0, 1]")
        require(batch_size >= 1, "model.batch_size", batch_size, "must be a positive integer")
        require(buffer_size >= batch_size, "model.buffer_size", buffer_size,
                f"must hold at least one batch (model.batch_size={batch_size})")
        require(updates_per_batch >= 1, "model.updates_per_batch", updates_per_batch, "must be a positive integer")
        self.lr = lr
        self.learning_starts = learning_starts
        self.updates_per_batch = updates_per_batch
        self.max_grad_norm = max_grad_norm

        num_actions = self.action_spec.space.n
        network = self.build_q_network(q_net, num_actions)
        self.q_actor = QValueActor(network, in_keys=["observation"], spec=self.action_spec)
        self.exploration = EGreedyModule(
            self.action_spec, eps_init=eps_init, eps_end=eps_end, annealing_num_steps=eps_anneal_frames
        )
        self._exploration_policy = TensorDictSequential(self.q_actor, self.exploration)

        self.loss_module = DQNLoss(
            self.q_actor, loss_function=loss_function, delay_value=True, double_dqn=double_dqn,
            action_space=self.action_spec,
        )
        self.loss_module.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        if target_tau is not None:
            self.target_updater: HardUpdate | SoftUpdate = SoftUpdate(self.loss_module, tau=target_tau)
        else:
            self.target_updater = HardUpdate(self.loss_module, value_network_update_interval=target_update_interval)
        self.batch_size = batch_size
        self.replay_buffer = make_replay_buffer(buffer_size, storage=replay_storage)

    def build_q_network(self, q_net: NetFactory | None, num_actions: int) -> nn.Module:
        """The online Q-network: ``q_net(observation_size, num_actions)``, an MLP by default."""
        return (q_net or MLP)(int(self.observation_spec.shape[-1]), num_actions)

    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """Greedy Q-actor followed by epsilon-greedy exploration."""
        return self._exploration_policy

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """The greedy Q-actor."""
        return self.q_actor

    @property
    def epsilon(self) -> float:
        """The current exploration rate."""
        return float(self.exploration.eps)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the online Q-network."""
        return torch.optim.Adam(self.q_actor.parameters(), lr=self.lr)

    def store(self, batch: TensorDictBase) -> None:
        """Add a collected batch to the replay buffer."""
        self.replay_buffer.extend(batch.select(*TRANSITION_KEYS).reshape(-1).cpu())

    def before_q_updates(self, batch: TensorDictBase) -> Metrics:
        """Work between storing a batch and the Q updates (model learning, imagination); none here."""
        return {}

    def q_batch(self) -> TensorDictBase:
        """The transitions of one TD step."""
        return self.replay_buffer.sample(self.batch_size).to(self.device)

    def update(self, batch: TensorDictBase) -> Metrics:
        """Store the batch, decay epsilon, then take ``updates_per_batch`` TD steps."""
        self.store(batch)
        self.exploration.step(batch.numel())
        metrics = {"train/epsilon": self.epsilon}
        if len(self.replay_buffer) < self.learning_starts:
            return metrics
        metrics.update(self.before_q_updates(batch))
        optimizer = self.optimizer(0)
        losses = torch.empty(self.updates_per_batch, device=self.device)
        for i in range(self.updates_per_batch):
            loss = self.loss_module(self.q_batch())["loss"]
            optimizer.zero_grad()
            self.manual_backward(loss)
            if self.max_grad_norm is not None:
                self.clip_gradients(optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
            optimizer.step()
            self.target_updater.step()
            losses[i] = loss.detach()
        metrics["loss/q"] = losses.mean().item()
        return metrics

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the hard-update counter, so target copies happen on the same steps after resume."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["target_update_counter"] = getattr(self.target_updater, "counter", 0)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base extras and the hard-update counter."""
        super().on_load_checkpoint(checkpoint)
        if hasattr(self.target_updater, "counter"):
            self.target_updater.counter = checkpoint["mbrl"]["target_update_counter"]
