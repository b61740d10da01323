"""Intrinsic Curiosity Module (Pathak et al. 2017): forward and inverse models in a learned feature space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import nn

from mbrl_lightning.curiosity.base import Curiosity
from mbrl_lightning.nets import MLP


class ICM(Curiosity):
    """Novelty = error of a forward model predicting the next state's features.

    Features come from an encoder trained only through the inverse model (which action led from
    one state to the next), so they keep what the agent controls and drop what it cannot.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env.
        feature_size: width of the learned features.
        hidden_sizes: hidden layers of the encoder, forward and inverse models.
        forward_weight: share of the forward loss in the total (the paper's beta, 0.2).
    """

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        feature_size: int = 32,
        hidden_sizes: Sequence[int] = (64,),
        forward_weight: float = 0.2,
    ) -> None:
        super().__init__(observation_size, action_size)
        self.forward_weight = forward_weight
        self.encoder = MLP(observation_size, feature_size, hidden_sizes, nn.ELU)
        self.forward_model = MLP(feature_size + action_size, feature_size, hidden_sizes, nn.ELU)
        self.inverse_model = MLP(2 * feature_size, action_size, hidden_sizes, nn.ELU)

    def _forward_errors(self, transitions: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.encoder(transitions["observation"])
        next_features = self.encoder(transitions["next", "observation"])
        action = transitions["action"].to(features.dtype)
        # The forward model must not shape the features: they belong to the inverse model.
        predicted = self.forward_model(torch.cat([features.detach(), action], -1))
        errors = 0.5 * ((predicted - next_features.detach()) ** 2).sum(-1)
        return errors, features, next_features

    @torch.no_grad()
    def novelty(self, transitions: TensorDictBase) -> torch.Tensor:
        """Forward-model error in feature space."""
        return self._forward_errors(transitions)[0]

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """``loss_forward`` and ``loss_inverse``, weighted ``forward_weight : 1 - forward_weight``."""
        errors, features, next_features = self._forward_errors(transitions)
        predicted_action = self.inverse_model(torch.cat([features, next_features], -1))
        action = transitions["action"]
        if not action.is_floating_point():  # one-hot choices: which one was taken
            inverse = F.cross_entropy(predicted_action, action.argmax(-1))
        else:
            inverse = F.mse_loss(predicted_action, action.to(predicted_action.dtype))
        return TensorDict(
            loss_forward=self.forward_weight * errors.mean(),
            loss_inverse=(1 - self.forward_weight) * inverse,
        )
