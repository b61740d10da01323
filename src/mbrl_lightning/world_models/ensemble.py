"""Probabilistic bootstrap ensemble (PETS, Chua et al. 2018): Gaussian heads, NLL, elites."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import nn

from mbrl_lightning.nets import EnsembleMLP
from mbrl_lightning.world_models.base import RawOutput, WorldModel


class GaussianEnsembleWorldModel(WorldModel):
    """Members predict a Gaussian over ``[delta observation, reward]`` and a termination logit.

    All members run in one batched network. Each member trains on its own bootstrap resample of
    every batch, so members disagree where data is scarce. The log-variance is softly bounded
    between learned limits, and the limits are pulled together by a small penalty, as in PETS.

    Args:
        observation_size: derived from the env.
        action_size: derived from the env.
        num_members: ensemble size.
        num_elites: members with the lowest held-out error used for prediction.
        hidden_sizes: widths of the hidden layers of every member.
        activation: activation class after every hidden layer.
        bootstrap: resample each batch with replacement per member.
        init_max_logvar: initial upper log-variance limit.
        init_min_logvar: initial lower log-variance limit.
        logvar_limit_weight: weight of the penalty on the log-variance limits.
    """

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        num_members: int = 5,
        num_elites: int = 3,
        hidden_sizes: Sequence[int] = (200, 200, 200),
        activation: type[nn.Module] = nn.SiLU,
        bootstrap: bool = True,
        init_max_logvar: float = 0.5,
        init_min_logvar: float = -10.0,
        logvar_limit_weight: float = 0.01,
    ) -> None:
        if not 1 <= num_elites <= num_members:
            raise ValueError(f"num_elites={num_elites}: must lie in [1, num_members={num_members}].")
        self._num_members = num_members
        super().__init__(observation_size, action_size)
        self.num_elites = num_elites
        self.bootstrap = bootstrap
        self.logvar_limit_weight = logvar_limit_weight
        self.network = EnsembleMLP(
            num_members, observation_size + action_size, 2 * self.target_size + 1, hidden_sizes, activation
        )
        self.max_logvar = nn.Parameter(torch.full((self.target_size,), init_max_logvar))
        self.min_logvar = nn.Parameter(torch.full((self.target_size,), init_min_logvar))
        self.register_buffer("elite_indices", torch.arange(num_elites))

    @property
    def num_members(self) -> int:
        """Ensemble size."""
        return self._num_members

    def raw_output(self, inputs: torch.Tensor, members: torch.Tensor | None = None) -> RawOutput:
        """Mean, bounded log-variance and termination logit of every member (or of ``members`` only)."""
        if inputs.dim() == 2:
            inputs = inputs.expand(self.num_members, *inputs.shape)
        out = self.network(inputs, members)
        size = self.target_size
        mean, raw_logvar, done_logit = out[..., :size], out[..., size : 2 * size], out[..., 2 * size :]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return RawOutput(mean=mean, done_logit=done_logit, logvar=logvar)

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """``loss_nll`` (Gaussian NLL), ``loss_logvar_limits`` and ``loss_done`` (BCE)."""
        inputs = self.model_inputs(transitions["observation"], transitions["action"])
        targets = self.model_targets(transitions)
        terminated = transitions["next", "terminated"].to(inputs.dtype)
        batch = inputs.shape[0]
        if self.bootstrap:
            index = torch.randint(batch, (self.num_members, batch), device=inputs.device)
        else:
            index = torch.arange(batch, device=inputs.device).expand(self.num_members, batch)
        out = self.raw_output(inputs[index])
        inverse_var = torch.exp(-out.logvar)
        nll = ((out.mean - targets[index]) ** 2 * inverse_var + out.logvar).mean()
        limits = self.logvar_limit_weight * (self.max_logvar.sum() - self.min_logvar.sum())
        return TensorDict(
            loss_nll=nll,
            loss_logvar_limits=limits,
            loss_done=F.binary_cross_entropy_with_logits(out.done_logit, terminated[index]),
        )

    def select_elites(self, errors: torch.Tensor) -> None:
        """Keep the ``num_elites`` members with the lowest held-out error."""
        self.elite_indices.copy_(torch.topk(errors, self.num_elites, largest=False).indices)
