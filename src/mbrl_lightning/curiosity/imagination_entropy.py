"""Imagination entropy for discrete actions: how much the imagined futures of the actions differ."""

from __future__ import annotations

from collections.abc import Callable

import torch

# (frames [batch, ...], one-hot actions [batch, num_actions]) -> predicted next frames [batch, ...]
Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def discrete_imagination_entropy(predict: Predict, observation: torch.Tensor, num_actions: int) -> torch.Tensor:
    """Spread of the one-step futures of every action, shape ``[batch]``.

    Each state is imagined one step ahead under each of the ``num_actions`` actions; the score
    is the standard deviation across those predictions, averaged over their elements (seed 004:
    higher spread, higher motivation; the continuous-action variant spreads over noisy rollouts).
    """
    batch = observation.shape[0]
    actions = torch.eye(num_actions, device=observation.device, dtype=torch.long)
    frames = observation.repeat_interleave(num_actions, 0)
    predictions = predict(frames, actions.repeat(batch, 1))
    predictions = predictions.reshape(batch, num_actions, -1)
    return predictions.std(1).mean(-1)


def squash(score: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``tanh(score / scale)``: a bonus in [0, 1) for non-negative scores, as seed 004 squashes them."""
    return torch.tanh(score / scale)
