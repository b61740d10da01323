"""Deterministic world models: an MLP (the adaptive-imagination design's model) and its linear special case."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.modules import MLP

from mbrl_lightning.world_models.base import RawOutput, WorldModel


class MLPWorldModel(WorldModel):
    """One network predicts observation delta, reward and a termination logit.

    Loss: MSE on the normalised delta, MSE on the normalised reward, BCE on termination.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env.
        hidden_sizes: widths of the hidden layers; empty for a linear model.
        activation: activation class after every hidden layer.
    """

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        hidden_sizes: Sequence[int] = (200, 200),
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__(observation_size, action_size)
        self.network = MLP(
            in_features=observation_size + action_size,
            out_features=self.target_size + 1,
            num_cells=list(hidden_sizes),
            activation_class=activation,
        )

    def raw_output(self, inputs: torch.Tensor) -> RawOutput:
        """Outputs with a member dimension of size 1."""
        out = self.network(inputs).unsqueeze(0)
        return RawOutput(mean=out[..., :-1], done_logit=out[..., -1:])

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """``loss_observation`` and ``loss_reward`` (MSE), ``loss_done`` (BCE)."""
        out = self.raw_output(self.model_inputs(transitions["observation"], transitions["action"]))
        targets = self.model_targets(transitions)
        terminated = transitions["next", "terminated"].to(out.done_logit.dtype)
        size = self.observation_size
        return TensorDict(
            loss_observation=F.mse_loss(out.mean[0, :, :size], targets[:, :size]),
            loss_reward=F.mse_loss(out.mean[0, :, size:], targets[:, size:]),
            loss_done=F.binary_cross_entropy_with_logits(out.done_logit[0], terminated),
        )


class LinearWorldModel(MLPWorldModel):
    """The cheapest baseline: next state, reward and termination logit linear in (state, action).

    Args:
        observation_size: derived from the env.
        action_size: derived from the env.
    """

    def __init__(self, observation_size: int, action_size: int) -> None:
        super().__init__(observation_size, action_size, hidden_sizes=())
