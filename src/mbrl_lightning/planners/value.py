"""A learned state value for the leaves of a tree search, trained on TD(lambda) returns of real trajectories."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import Tensor, nn
from torchrl.data import ReplayBuffer
from torchrl.modules import MLP
from torchrl.objectives.value.functional import td0_return_estimate, vec_td_lambda_return_estimate

from mbrl_lightning.errors import require
from mbrl_lightning.world_models.normalization import RunningNormalizer


def trajectory_cuts(stored: TensorDictBase) -> Tensor:
    """``[T, 1]`` True where a stored row ends its piece of trajectory: the episode ends there, the next
    row does not start where this one ended (a collector batch edge of another env copy, the ring
    buffer's wrap), or it is the last row."""
    observation, following = stored["observation"], stored["next", "observation"]
    terminated = stored["next", "terminated"].bool()
    done = stored.get(("next", "done"), terminated).bool() | terminated
    if ("next", "truncated") in stored.keys(include_nested=True):
        done = done | stored["next", "truncated"].bool()
    cut = torch.ones_like(done)
    cut[:-1] = (observation[1:] != following[:-1]).flatten(1).any(-1, keepdim=True)
    return done | cut


class LeafValueLearner(nn.Module):
    """``V(s)``: the discounted return from ``s``, regressed on TD(lambda) returns of the stored trajectories.

    Every ``refresh_every`` gradient steps the targets of the whole buffer are recomputed with
    TorchRL's ``vec_td_lambda_return_estimate`` (Sutton & Barto 12.1; the lambda-returns of Dreamer,
    lambda 0.95): ``G_t = r_t + gamma ((1 - lambda) V_target(s_t+1) + lambda G_t+1)``, cut at the end of
    every piece of trajectory (:func:`trajectory_cuts`). Terminal steps bootstrap nothing, time limits
    and cuts bootstrap ``V_target``, a Polyak-averaged copy of the network. ``lmbda = 0`` is TD(0),
    ``lmbda = 1`` the Monte-Carlo return (AlphaZero's outcome targets). A termination ``k`` steps ahead
    reaches a state's target at once, weighted ``(gamma lambda)^k``; TD(0) needs ``k`` target-network
    generations for it. Inputs are normalised by running statistics of the observations seen. The
    estimator is called on the whole buffer rather than through ``TD0Estimator``-style modules: both
    networks must read the same normaliser, which is neither network's parameter.

    Args:
        observation_size: features of an observation.
        hidden_sizes: widths of the hidden layers.
        gamma: discount; the planner's own, so leaf values and in-tree returns add up.
        tau: Polyak step of the target network after every gradient step.
        batch_size: transitions per gradient step.
        updates_per_batch: gradient steps per collected batch.
        lmbda: the TD(lambda) trace decay of the targets.
        refresh_every: gradient steps between recomputations of the buffer's targets.
    """

    def __init__(
        self,
        observation_size: int,
        hidden_sizes: Sequence[int] = (128, 128),
        gamma: float = 0.99,
        tau: float = 0.01,
        batch_size: int = 256,
        updates_per_batch: int = 100,
        lmbda: float = 0.95,
        refresh_every: int = 20,
    ) -> None:
        super().__init__()
        require(0.0 < tau <= 1.0, "model.value_tau", tau, "must lie in (0, 1]")
        require(batch_size >= 1, "model.value_batch_size", batch_size, "must be a positive integer")
        require(0.0 <= lmbda <= 1.0, "model.value_lambda", lmbda, "must lie in [0, 1]")
        require(refresh_every >= 1, "refresh_every", refresh_every, "must be a positive integer")
        self.gamma = gamma
        self.tau = tau
        self.batch_size = batch_size
        self.updates_per_batch = updates_per_batch
        self.lmbda = lmbda
        self.refresh_every = refresh_every
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

    @torch.no_grad()
    def returns(self, stored: TensorDictBase) -> Tensor:
        """TD(lambda) targets ``[T, 1]`` of the rows of ``stored``, taken in storage order as trajectories."""
        following = self.target_network(self.normalizer.normalize(stored["next", "observation"].float()))
        reward = stored["next", "reward"].float().reshape(following.shape)
        terminated = stored["next", "terminated"].bool().reshape(following.shape)
        if self.lmbda == 0.0:  # TorchRL's lambda estimator cannot build its filter for lambda 0
            return td0_return_estimate(self.gamma, following, reward, terminated)
        done = trajectory_cuts(stored).reshape(following.shape)
        return vec_td_lambda_return_estimate(
            self.gamma, self.lmbda, following.unsqueeze(0), reward.unsqueeze(0), done.unsqueeze(0),
            terminated.unsqueeze(0),
        ).squeeze(0)

    def train_steps(self, replay_buffer: ReplayBuffer, optimize: Callable[[Tensor], None]) -> dict[str, float]:
        """``updates_per_batch`` regression steps on uniformly sampled rows of ``replay_buffer``."""
        if len(replay_buffer) < self.batch_size or self.updates_per_batch == 0:
            return {}
        device = next(self.network.parameters()).device
        stored = replay_buffer[:].to(device)
        observation = self.normalizer.normalize(stored["observation"].float())
        sources = list(self.network.parameters())
        targets = list(self.target_network.parameters())
        loss = value = torch.zeros(())
        returns = observation.new_zeros(0)
        for step in range(self.updates_per_batch):
            if step % self.refresh_every == 0:
                returns = self.returns(stored)
            index = torch.randint(observation.shape[0], (self.batch_size,), device=device)
            value = self.network(observation[index])
            loss = F.mse_loss(value, returns[index])
            optimize(loss)
            with torch.no_grad():
                torch._foreach_lerp_(targets, sources, self.tau)
        return {"loss/value": float(loss.detach()), "planner/leaf_value_mean": float(value.detach().mean())}
