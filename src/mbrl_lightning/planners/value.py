"""A learned state value for the leaves of a tree search, trained by TD(0) on real transitions."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchrl.data import ReplayBuffer
from torchrl.modules import MLP

from mbrl_lightning.errors import require
from mbrl_lightning.world_models.normalization import RunningNormalizer


class LeafValueLearner(nn.Module):
    """``V(s)``: the discounted return from ``s``, regressed on ``r + gamma (1 - terminated) V_target(s')``.

    Targets come from a Polyak-averaged copy of the network; transitions that end by truncation
    (time limits) bootstrap, terminal ones do not. Inputs are normalised by running statistics of
    the observations seen. The target is written out rather than taken from TorchRL's
    ``TD0Estimator``: the estimator calls one TensorDict module on both states, while here both
    networks must read the same normaliser, which is neither network's parameter.

    Args:
        observation_size: features of an observation.
        hidden_sizes: widths of the hidden layers.
        gamma: discount; the planner's own, so leaf values and in-tree returns add up.
        tau: Polyak step of the target network after every gradient step.
        batch_size: transitions per gradient step.
        updates_per_batch: gradient steps per collected batch.
    """

    def __init__(
        self,
        observation_size: int,
        hidden_sizes: Sequence[int] = (128, 128),
        gamma: float = 0.99,
        tau: float = 0.01,
        batch_size: int = 256,
        updates_per_batch: int = 100,
    ) -> None:
        super().__init__()
        require(0.0 < tau <= 1.0, "model.value_tau", tau, "must lie in (0, 1]")
        require(batch_size >= 1, "model.value_batch_size", batch_size, "must be a positive integer")
        self.gamma = gamma
        self.tau = tau
        self.batch_size = batch_size
        self.updates_per_batch = updates_per_batch
        self.normalizer = RunningNormalizer(observation_size)
        self.network = MLP(in_features=observation_size, out_features=1, num_cells=list(hidden_sizes),
                           activation_class=nn.SiLU)
        self.target_network = copy.deepcopy(self.network).requires_grad_(False)

    def value(self, observation: Tensor) -> Tensor:
        """``V(s)`` for observations ``[n, obs]``, shape ``[n]`` (the planner's ``value_fn``)."""
        return self.network(self.normalizer.normalize(observation)).squeeze(-1)

    def observe(self, observation: Tensor) -> None:
        """Fold newly collected observations into the input statistics."""
        self.normalizer.update(observation)

    def train_steps(self, replay_buffer: ReplayBuffer, optimize: Callable[[Tensor], None]) -> dict[str, float]:
        """``updates_per_batch`` TD(0) steps on transitions sampled from ``replay_buffer``."""
        if len(replay_buffer) < self.batch_size or self.updates_per_batch == 0:
            return {}
        device = next(self.network.parameters()).device
        sources = list(self.network.parameters())
        targets = list(self.target_network.parameters())
        loss = value = torch.zeros(())
        for _ in range(self.updates_per_batch):
            batch = replay_buffer.sample(self.batch_size).to(device)
            observation = batch["observation"].float()
            with torch.no_grad():
                following = self.target_network(self.normalizer.normalize(batch["next", "observation"].float()))
                continues = 1.0 - batch["next", "terminated"].float()
                target = batch["next", "reward"].float() + self.gamma * continues * following
            value = self.network(self.normalizer.normalize(observation))
            loss = F.mse_loss(value, target)
            optimize(loss)
            with torch.no_grad():
                torch._foreach_lerp_(targets, sources, self.tau)
        return {"loss/value": float(loss.detach()), "planner/leaf_value_mean": float(value.detach().mean())}
