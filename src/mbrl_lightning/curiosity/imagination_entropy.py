"""Imagination entropy: reward states whose imagined futures spread apart.

Continuous actions: :class:`ImaginationEntropy` spreads noisy policy rollouts. Discrete actions:
:func:`discrete_imagination_entropy` spreads the one-step futures of every action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase

from mbrl_lightning.curiosity.base import Curiosity
from mbrl_lightning.errors import require
from mbrl_lightning.imagination import imagine
from mbrl_lightning.world_models import MLPWorldModel, WorldModel

Squash = Literal["tanh", "none"]
Policy = Callable[[TensorDictBase], TensorDictBase]
# (frames [batch, ...], one-hot actions [batch, num_actions]) -> predicted next frames [batch, ...]
Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
WorldModelFactory = Callable[[int, int], WorldModel]


class ImaginationEntropy(Curiosity):
    """Entropy of imagined terminal states plus the forward model's error, both squashed.

    Every state of a batch is rolled out ``rollouts`` times for ``horizon`` steps in the learned
    forward model, all at once through :func:`~mbrl_lightning.imagination.imagine`, with the
    noisy policy the caller passes (the imagination-entropy design: the actor plus Gaussian noise, clamped). The
    entropy of a state is the standard deviation across its rollouts of the imagined terminal
    states, averaged over features; features are measured in units of the model's running
    observation scale, so one ``entropy_beta`` fits envs whose features differ in scale. The
    curiosity term is the forward model's one-step squared error on the real transition, in the
    same units. The reward is ``squash(entropy_beta * entropy) + squash(curiosity_beta * error)``;
    :meth:`intrinsic_reward` (the Curiosity contract's ``normalize(novelty)``) is the second term.
    Both terms are scale-free already, so the module keeps no running reward scale
    (``running_scale = False``).

    The forward model is the world model this module owns (default: the imagination-entropy design's
    (observation + action) -> 256 -> 256 -> observation with a residual connection, here an
    :class:`MLPWorldModel` that predicts the change of state); :meth:`loss` trains it.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env.
        world_model: class called as ``world_model(observation_size, action_size)``; default MLP(256, 256).
        rollouts: imagined rollouts per state (the imagination-entropy design: 16).
        horizon: imagined steps per rollout (the imagination-entropy design: 1).
        entropy_beta: scale of the entropy before squashing.
        curiosity_beta: scale of the forward-model error before squashing (0: no curiosity term).
        squash: ``tanh`` bounds each term to [0, 1); ``none`` keeps the scaled values.
    """

    running_scale = False

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        world_model: WorldModelFactory | None = None,
        rollouts: int = 16,
        horizon: int = 1,
        entropy_beta: float = 1.0,
        curiosity_beta: float = 0.0,
        squash: Squash = "tanh",
    ) -> None:
        super().__init__(observation_size, action_size)
        require(rollouts >= 2, "model.imagination.rollouts", rollouts, "must be at least 2 (a spread needs two)")
        require(horizon >= 1, "model.imagination.horizon", horizon, "must be a positive integer")
        require(entropy_beta >= 0, "model.imagination.entropy_beta", entropy_beta, "must be non-negative")
        require(curiosity_beta >= 0, "model.imagination.curiosity_beta", curiosity_beta, "must be non-negative")
        require(squash in ("tanh", "none"), "model.imagination.squash", squash, "allowed values are 'tanh', 'none'")
        self.rollouts = rollouts
        self.horizon = horizon
        self.entropy_beta = entropy_beta
        self.curiosity_beta = curiosity_beta
        self.squash = squash
        self.world_model = (world_model or seed_forward_model)(observation_size, action_size)

    def _squash(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.squash == "tanh" else x

    def _scale(self, dtype: torch.dtype) -> torch.Tensor:
        return self.world_model.observation_normalizer.stats(dtype)[1]

    # ----------------------------------------------------------------- the two terms
    @torch.no_grad()
    def entropy(self, observation: torch.Tensor, policy: Policy) -> torch.Tensor:
        """Spread of the imagined terminal states of every state in ``observation`` ``[batch, obs]``, shape ``[batch]``."""
        batch = observation.shape[0]
        starts = TensorDict({"observation": observation.repeat_interleave(self.rollouts, 0)}, batch_size=[batch * self.rollouts])
        rollout = imagine(self.world_model, policy, starts, self.horizon, propagation="fixed_member")
        terminal = rollout["next", "observation"][:, -1].reshape(batch, self.rollouts, -1)
        return (terminal / self._scale(terminal.dtype)).std(1).mean(-1)

    @torch.no_grad()
    def novelty(self, transitions: TensorDictBase) -> torch.Tensor:
        """The forward model's squared one-step error on real transitions (scaled units), shape ``[batch]``."""
        prediction = self.world_model.predict(transitions["observation"], transitions["action"])
        predicted = prediction.next_observation[self.world_model.elite_indices].mean(0)
        error = (predicted - transitions["next", "observation"]) / self._scale(predicted.dtype)
        return (error**2).mean(-1)

    def normalize(self, novelty: torch.Tensor) -> torch.Tensor:
        """The curiosity term, ``squash(curiosity_beta * error)``: bounded, the error being in scaled units already."""
        return self._squash(self.curiosity_beta * novelty)

    @torch.no_grad()
    def bonus(self, transitions: TensorDictBase, policy: Policy) -> tuple[torch.Tensor, dict[str, float]]:
        """The reward added to real transitions, shape ``[batch]``, and its parts as metrics."""
        entropy = self.entropy(transitions["observation"], policy)
        entropy_reward = self._squash(self.entropy_beta * entropy)
        metrics = {"imagination/entropy": entropy.mean().item(), "curiosity/entropy_reward": entropy_reward.mean().item()}
        total = entropy_reward
        if self.curiosity_beta > 0:
            curiosity_reward = self.intrinsic_reward(transitions)
            metrics["curiosity/forward_error_reward"] = curiosity_reward.mean().item()
            total = total + curiosity_reward
        metrics["curiosity/intrinsic_reward"] = total.mean().item()
        return total, metrics

    # ----------------------------------------------------------------- learning
    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Update the forward model's normalisers (the terms are squashed, not scaled by running std)."""
        self.world_model.observe(transitions)
        super().observe(transitions)

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """The forward model's loss terms."""
        return self.world_model.loss(transitions)


def seed_forward_model(observation_size: int, action_size: int) -> WorldModel:
    """The imagination-entropy design's forward model: two hidden layers of 256 units, a residual (delta) output."""
    return MLPWorldModel(observation_size, action_size, hidden_sizes=(256, 256))


@torch.no_grad()
def discrete_imagination_entropy(predict: Predict, observation: torch.Tensor, num_actions: int) -> torch.Tensor:
    """Spread of the one-step futures of every action, shape ``[batch]``.

    Each state is imagined one step ahead under each of the ``num_actions`` actions; the score
    is the standard deviation across those predictions, averaged over their elements (the imagination-entropy design:
    higher spread, higher motivation).
    """
    batch = observation.shape[0]
    actions = torch.eye(num_actions, device=observation.device, dtype=torch.long)
    frames = observation.repeat_interleave(num_actions, 0)
    predictions = predict(frames, actions.repeat(batch, 1))
    return action_spread(predictions.reshape(batch, num_actions, -1))


@torch.no_grad()
def action_spread(predictions: torch.Tensor) -> torch.Tensor:
    """Standard deviation over dim 1 (the actions) of ``[batch, actions, ...]``, averaged over the rest, ``[batch]``.

    Written out because ``Tensor.std`` over a middle dimension took three times as long on the
    CPU (146 ms against 48 ms for 16 Pacman states and 9 actions).
    """
    predictions = predictions.flatten(2)
    deviation = predictions - predictions.mean(1, keepdim=True)
    return (deviation.square().sum(1) / (predictions.shape[1] - 1)).sqrt().mean(-1)


def squash(score: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``tanh(score / scale)``: a bonus in [0, 1) for non-negative scores, as the imagination-entropy design squashes them."""
    return torch.tanh(score / scale)
