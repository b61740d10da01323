"""The worked example of docs/architecture.md: DynaDDPG, a thin file over the shared model-based parts."""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch import seed_everything
from test_ddpg import TASK_ID, _fit

from mbrl_lightning.algorithms.dyna_ddpg import DynaDDPG
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.imagination.imagined_replay import SAMPLE_WEIGHT_KEY
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, WorldModelLearner


def test_dyna_ddpg_learns_from_real_and_confidence_weighted_imagined_transitions() -> None:
    seed_everything(0)
    ensemble = partial(GaussianEnsembleWorldModel, num_members=3, num_elites=2, hidden_sizes=(32,))
    model = DynaDDPG(
        EnvFactory(TASK_ID, num_envs=4),
        model_learning=partial(WorldModelLearner, world_model=ensemble, batch_size=64, updates_per_batch=10,
                               k_step_horizon=2),
        imagined=ImaginedReplay(buffer_size=5_000, starts=64, horizon=2, fraction=0.5, weight_by_confidence=True),
        actor_lr=1e-3, critic_lr=1e-3, tau=0.01, gamma=0.9, batch_size=64, learning_starts=200,
        frames_per_batch=40, updates_per_batch=20, noise_init=0.5, noise_end=0.1, noise_anneal_frames=1000,
        total_frames=1200, eval_every_frames=0, eval_episodes=16,
    )
    weights: list[torch.Tensor] = []
    update = model.gradient_update
    model.gradient_update = lambda sample: (weights.append(sample[SAMPLE_WEIGHT_KEY]), update(sample))[1]
    before = model.evaluate()["eval/return_mean"]
    _fit(model)
    after = model.evaluate()["eval/return_mean"]
    assert model.imagined.frames > 0 and len(model.imagined.buffer) > 0
    last = weights[-1]
    # Half of every batch is imagined, weighted by the model's confidence in (0, 1); real samples weigh 1.
    assert (last == 1).sum() == 32 and ((last > 0) & (last < 1)).sum() == 32
    assert 0 < model.confidence < 1 and model.k_step_curve is not None
    assert after > before + 3.0, (before, after)
    assert after > -4.0, after
