"""Training a world model on real transitions: held-out split, update step, diagnostics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase

from mbrl_lightning.world_models.base import WorldModel

VALIDATION_KEY = "is_validation"


def mark_validation(transitions: TensorDictBase, fraction: float) -> TensorDictBase:
    """Flag a random ``fraction`` of transitions as held out from world-model training."""
    flags = torch.rand(transitions.batch_size, device=transitions.device) < fraction
    return transitions.set(VALIDATION_KEY, flags)


def world_model_step(
    model: WorldModel, sample: TensorDictBase, optimize: Callable[[torch.Tensor], None]
) -> dict[str, float]:
    """One gradient step on the training part of ``sample``; returns the loss terms."""
    if VALIDATION_KEY in sample.keys():
        sample = sample[~sample[VALIDATION_KEY]]
    terms = model.loss(sample)
    total = sum(terms.values())
    optimize(total)
    metrics = {f"loss/world_model_{key.removeprefix('loss_')}": value.item() for key, value in terms.items()}
    metrics["world_model/train_loss"] = total.item()
    return metrics


@torch.no_grad()
def validation_metrics(model: WorldModel, held_out: TensorDictBase) -> dict[str, float]:
    """Held-out loss, confidence ``exp(-val_loss)`` (the adaptive-imagination design) and ensemble disagreement."""
    metrics = model.validate(held_out)
    out = {f"world_model/{key}": value.item() for key, value in metrics.items()}
    out["world_model/confidence"] = float(torch.exp(-metrics["val_loss"]))
    return out


@torch.no_grad()
def k_step_errors(model: WorldModel, trajectories: TensorDictBase, horizon: int) -> torch.Tensor:
    """Mean squared error (normalised units) of open-loop predictions 1..``horizon`` steps ahead.

    ``trajectories`` is a collector batch ``[envs, time]``. From every start, the elite-mean model
    replays the real actions; errors after an episode boundary are left out.

    Returns:
        A tensor ``[horizon]``; entry ``k - 1`` is the k-step error (NaN where no window fits).
    """
    time = trajectories.shape[-1]
    starts = time - horizon + 1
    if starts < 1:
        return torch.full((horizon,), float("nan"))
    observation = trajectories["observation"][:, :starts]
    alive = torch.ones(observation.shape[:2], dtype=torch.bool, device=observation.device)
    errors = []
    scale = model.observation_normalizer.stats(observation.dtype)[1]
    for k in range(horizon):
        window = slice(k, k + starts)
        action = trajectories["action"][:, window]
        prediction = model.predict(observation.reshape(-1, observation.shape[-1]), action.reshape(-1, action.shape[-1]))
        observation = prediction.next_observation[model.elite_indices].mean(0).reshape(observation.shape)
        real = trajectories["next", "observation"][:, window]
        squared = (((observation - real) / scale) ** 2).mean(-1)
        errors.append(squared[alive].mean() if alive.any() else torch.tensor(float("nan")))
        alive = alive & ~trajectories["next", "done"][:, window].squeeze(-1)
    return torch.stack(errors).cpu()
