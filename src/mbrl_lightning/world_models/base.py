"""The world-model contract: predict next observation, reward and termination from (observation, action)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase

from mbrl_lightning.world_models.contract import DynamicsModel
from mbrl_lightning.world_models.normalization import RunningNormalizer


@dataclass
class Prediction:
    """Per-member predictions in environment units, each shaped ``[members, batch, ...]``."""

    next_observation: torch.Tensor
    reward: torch.Tensor
    done_probability: torch.Tensor
    next_observation_std: torch.Tensor | None = None
    reward_std: torch.Tensor | None = None

    @property
    def num_members(self) -> int:
        """How many members predicted (1 for a single model)."""
        return self.next_observation.shape[0]


@dataclass
class RawOutput:
    """Network outputs in normalised units: targets are ``[delta observation, reward]``."""

    mean: torch.Tensor
    done_logit: torch.Tensor
    logvar: torch.Tensor | None = None


class WorldModel(DynamicsModel):
    """Learned dynamics of an environment with vector observations (the :class:`DynamicsModel` contract).

    The model predicts the change of the observation (a delta, easier to learn than the next
    state itself), the reward and the probability of termination. Inputs and targets are
    normalised by running statistics held here, apart from the network that subclasses define.

    Args:
        observation_size: width of the observation vector (derived from the env).
        action_size: width of the action vector, one-hot for discrete actions (derived).
    """

    def __init__(self, observation_size: int, action_size: int) -> None:
        super().__init__()
        self.observation_size = observation_size
        self.action_size = action_size
        self.observation_normalizer = RunningNormalizer(observation_size)
        self.delta_normalizer = RunningNormalizer(observation_size)
        self.reward_normalizer = RunningNormalizer(1)
        self.register_buffer("elite_indices", torch.arange(self.num_members))

    @property
    def num_members(self) -> int:
        """Ensemble size; 1 for a single model."""
        return 1

    @property
    def target_size(self) -> int:
        """Width of the regression target: observation delta and reward."""
        return self.observation_size + 1

    # ----------------------------------------------------------------- data
    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Update the normalisation statistics with real transitions."""
        observation = transitions["observation"]
        self.observation_normalizer.update(observation)
        self.delta_normalizer.update(transitions["next", "observation"] - observation)
        self.reward_normalizer.update(transitions["next", "reward"])

    def model_inputs(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Normalised observation concatenated with the action."""
        return torch.cat([self.observation_normalizer.normalize(observation), action.to(observation.dtype)], -1)

    def model_targets(self, transitions: TensorDictBase) -> torch.Tensor:
        """Normalised ``[delta observation, reward]`` of real transitions."""
        delta = transitions["next", "observation"] - transitions["observation"]
        return torch.cat(
            [self.delta_normalizer.normalize(delta), self.reward_normalizer.normalize(transitions["next", "reward"])],
            -1,
        )

    # ----------------------------------------------------------------- prediction
    @abstractmethod
    def raw_output(self, inputs: torch.Tensor) -> RawOutput:
        """Network outputs for inputs ``[batch, in]`` (or ``[members, batch, in]``), with a member dim."""

    def predict(self, observation: torch.Tensor, action: torch.Tensor) -> Prediction:
        """Every member's prediction for a batch of observations and actions."""
        out = self.raw_output(self.model_inputs(observation, action))
        return self._prediction(observation.unsqueeze(0), out)

    def predict_grouped(self, observation: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None) -> Prediction:
        """Member ``members[g]`` (default: member ``g``) predicts only for row group ``g``: inputs ``[groups, batch, ...]``.

        Only the members named run (trajectory sampling); ``raw_output`` must accept ``members`` then.
        """
        groups = self.num_members if members is None else len(members)
        if observation.dim() != 3 or observation.shape[0] != groups:
            raise ValueError(f"predict_grouped needs inputs [groups={groups}, batch, ...], got {tuple(observation.shape)}.")
        inputs = self.model_inputs(observation, action)
        out = self.raw_output(inputs) if members is None else self.raw_output(inputs, members=members)
        return self._prediction(observation, out)

    def _prediction(self, observation: torch.Tensor, out: RawOutput) -> Prediction:
        """Network outputs in environment units; ``observation`` broadcasts against the member dim."""
        size = self.observation_size
        delta = self.delta_normalizer.denormalize(out.mean[..., :size])
        reward = self.reward_normalizer.denormalize(out.mean[..., size:])
        prediction = Prediction(
            next_observation=observation + delta,
            reward=reward,
            done_probability=torch.sigmoid(out.done_logit),
        )
        if out.logvar is not None:
            std = (0.5 * out.logvar).exp()
            prediction.next_observation_std = std[..., :size] * self.delta_normalizer.stats(std.dtype)[1]
            prediction.reward_std = std[..., size:] * self.reward_normalizer.stats(std.dtype)[1]
        return prediction

    def forward(self, transitions: TensorDictBase) -> TensorDictBase:
        """Write the elite-mean prediction as ``("next", "observation"|"reward"|"done_probability")``."""
        prediction = self.predict(transitions["observation"], transitions["action"])
        elites = self.elite_indices
        transitions.set(("next", "observation"), prediction.next_observation[elites].mean(0))
        transitions.set(("next", "reward"), prediction.reward[elites].mean(0))
        transitions.set(("next", "done_probability"), prediction.done_probability[elites].mean(0))
        return transitions

    # ----------------------------------------------------------------- learning
    @abstractmethod
    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """Named loss terms (keys starting with ``loss_``) on real transitions."""

    def member_errors(self, transitions: TensorDictBase) -> torch.Tensor:
        """Per-member loss of the adaptive-imagination design (MSE of targets + BCE of termination), shape ``[members]``."""
        out = self.raw_output(self.model_inputs(transitions["observation"], transitions["action"]))
        targets = self.model_targets(transitions).unsqueeze(0)
        terminated = transitions["next", "terminated"].to(out.done_logit.dtype).unsqueeze(0).expand_as(out.done_logit)
        mse = ((out.mean - targets) ** 2).mean((-2, -1))
        bce = F.binary_cross_entropy_with_logits(out.done_logit, terminated, reduction="none").mean((-2, -1))
        return mse + bce

    @torch.no_grad()
    def validate(self, transitions: TensorDictBase) -> TensorDictBase:
        """Held-out loss of the elites and, for ensembles, their disagreement; re-ranks elites.

        Where elites are chosen, they are chosen on the even rows of the held-out transitions and
        measured on the odd ones: a loss measured on the data that picked the members would be
        biased low (the best of several noisy scores), and confidence derived from it too high.
        """
        if len(self.elite_indices) < self.num_members and transitions.numel() >= 2:
            self.select_elites(self.member_errors(transitions[0::2]))
            transitions = transitions[1::2]
        errors = self.member_errors(transitions)
        metrics = TensorDict({"val_loss": errors[self.elite_indices].mean()})
        if self.num_members > 1:
            metrics["disagreement"] = self.disagreement(transitions["observation"], transitions["action"]).mean()
        return metrics

    def select_elites(self, errors: torch.Tensor) -> None:
        """Keep the members with the lowest held-out error (all of them for a single model)."""

    def disagreement(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Per-sample spread of the elites' predicted next states, in normalised units, shape ``[batch]``."""
        out = self.raw_output(self.model_inputs(observation, action))
        means = out.mean[self.elite_indices, :, : self.observation_size]
        if means.shape[0] < 2:
            return torch.zeros(means.shape[1], device=means.device)
        return means.std(0).mean(-1)
