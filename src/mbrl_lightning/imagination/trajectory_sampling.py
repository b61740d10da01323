"""Trajectory sampling (PETS, Chua et al. 2018): each imagined row follows one ensemble member.

One implementation serves imagined rollouts (``imagination/rollout.py``) and planners
(``planners/dynamics.py``). Rows are grouped by their member and each member runs once, on its
own rows only (``WorldModel.predict_grouped``), so a step costs about one network pass over the
batch instead of one per member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from mbrl_lightning.imagination.member_layout import MemberLayout
from mbrl_lightning.world_models import WorldModel

Propagation = Literal["random_member", "fixed_member", "mean"]
# ``independent``: every row draws its member uniformly among the elites.
# ``balanced``: the elites share the rows evenly; consecutive rows go to different members, so the
# particles of one planner candidate (consecutive rows) spread over the ensemble as in PETS.
Assignment = Literal["independent", "balanced"]
PROPAGATIONS = ("random_member", "fixed_member", "mean")


@dataclass
class RowPrediction:
    """One prediction per row, each shaped ``[n, ...]``."""

    next_observation: Tensor
    reward: Tensor
    done_probability: Tensor
    next_observation_std: Tensor | None = None


def predict_by_member(model: WorldModel, observation: Tensor, action: Tensor, member: Tensor) -> RowPrediction:
    """Row ``i`` predicted by member ``member[i]``; every member used runs once, on its own rows."""
    if model.num_members == 1:
        prediction = model.predict(observation, action)
        return RowPrediction(prediction.next_observation[0], prediction.reward[0], prediction.done_probability[0],
                             None if prediction.next_observation_std is None else prediction.next_observation_std[0])
    layout = MemberLayout.of(member)
    # Members with fewer rows than the largest group get padding rows (copies of row 0, never read back).
    prediction = model.predict_grouped(layout.group(observation), layout.group(action), members=layout.members)

    def rows(values: Tensor | None) -> Tensor | None:
        return None if values is None else layout.ungroup(values)

    return RowPrediction(rows(prediction.next_observation), rows(prediction.reward),
                         rows(prediction.done_probability), rows(prediction.next_observation_std))


def predict_elite_mean(model: WorldModel, observation: Tensor, action: Tensor) -> RowPrediction:
    """Every row moved by the mean prediction of the elites (only the elites run)."""
    elites = model.elite_indices
    if model.num_members == 1:
        prediction = model.predict(observation, action)
    else:
        shape = (len(elites), *observation.shape)
        prediction = model.predict_grouped(observation.expand(shape), action.expand(*shape[:-1], action.shape[-1]),
                                           members=elites)
        elites = slice(None)
    std = prediction.next_observation_std
    return RowPrediction(prediction.next_observation[elites].mean(0), prediction.reward[elites].mean(0),
                         prediction.done_probability[elites].mean(0), None if std is None else std[elites].mean(0))


class TrajectorySampler:
    """Moves a batch of imagined rows one step: which member moves which row, and the prediction.

    ``fixed_member`` keeps a row on one member for the whole rollout (TS-inf), ``random_member``
    draws members anew every step (TS-1), ``mean`` moves every row by the elites' mean.

    Args:
        world_model: the learned dynamics.
        propagation: ``fixed_member``, ``random_member`` or ``mean``.
        assignment: ``independent`` or ``balanced`` (see :data:`Assignment`).
        sample_noise: sample next states from the predicted Gaussians (aleatoric uncertainty);
            not under ``mean``, which propagates the expectation.
    """

    def __init__(self, world_model: WorldModel, propagation: Propagation = "fixed_member",
                 assignment: Assignment = "balanced", sample_noise: bool = False) -> None:
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation={propagation!r}: allowed values are {', '.join(map(repr, PROPAGATIONS))}")
        self.world_model = world_model
        self.propagation = propagation
        self.assignment = assignment
        self.sample_noise = sample_noise
        self._fixed: Tensor | None = None

    def reset(self, n: int, device: torch.device) -> None:
        """Start a rollout of ``n`` rows: fix each row's member for ``fixed_member``."""
        elites = self.world_model.elite_indices.to(device)
        if self.assignment == "balanced":
            self._fixed = elites[torch.arange(n, device=device) % len(elites)]
        else:
            # Drawn whatever the propagation, so the random stream is the same for every mode.
            self._fixed = elites[torch.randint(len(elites), (n,), device=device)]

    def members(self, n: int, device: torch.device) -> Tensor:
        """The member of each row for this step."""
        if self._fixed is None or self._fixed.numel() != n:
            self.reset(n, device)
        if self.propagation != "random_member":
            return self._fixed
        elites = self.world_model.elite_indices.to(device)
        if self.assignment == "balanced":
            return elites[torch.randperm(n, device=device) % len(elites)]
        return elites[torch.randint(len(elites), (n,), device=device)]

    def step(self, observation: Tensor, action: Tensor) -> RowPrediction:
        """Each row's prediction (with sampled noise when asked)."""
        if self.propagation == "mean":
            return predict_elite_mean(self.world_model, observation, action)
        member = self.members(observation.shape[0], observation.device)
        prediction = predict_by_member(self.world_model, observation, action, member)
        std = prediction.next_observation_std
        if self.sample_noise and std is not None:
            prediction.next_observation = prediction.next_observation + std * torch.randn_like(std)
        return prediction
