"""Model-based PPO: rollouts follow confidence, imagined samples get their weight, return rises."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from mlflow.tracking import MlflowClient

from mbrl_lightning.algorithms.mbppo import ModelBasedPPO, interpolate_rollouts
from mbrl_lightning.algorithms.on_policy import WEIGHT_KEY
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.tracking import tracking_uri


def _model(**kwargs) -> ModelBasedPPO:
    return ModelBasedPPO(EnvFactory("CartPole-v1", num_envs=4), total_frames=1024, frames_per_batch=64, **kwargs)


def test_rollout_count_follows_confidence() -> None:
    assert interpolate_rollouts(0.01, threshold=0.05, low=10, high=100) == 10
    assert interpolate_rollouts(0.05, threshold=0.05, low=10, high=100) == 10
    assert interpolate_rollouts(0.525, threshold=0.05, low=10, high=100) == 55
    assert interpolate_rollouts(1.0, threshold=0.05, low=10, high=100) == 100
    model = _model(min_rollouts=4, max_rollouts=20, confidence_threshold=0.0)
    counts = []
    for confidence in (0.0, 0.25, 0.5, 1.0):
        model.model_learner.confidence = confidence
        counts.append(model.rollout_count())
    assert counts == [4, 8, 12, 20]
    fixed = _model(min_rollouts=4, max_rollouts=20, adaptive_rollouts=False)
    assert fixed.rollout_count() == 20


@pytest.mark.parametrize("weight_imagined", [True, False])
def test_imagined_samples_get_the_configured_weight(weight_imagined: bool) -> None:
    torch.manual_seed(0)
    model = _model(imagination_discount=0.8, weight_imagined=weight_imagined, min_rollouts=16, max_rollouts=16)
    with torch.no_grad():
        batch = EnvFactory("CartPole-v1", num_envs=4).make(seed=0).rollout(16, model.actor, break_when_any_done=False)
    model.model_learner.confidence = 0.5
    imagined = model.imagine_rollouts(batch, {})
    samples = model.mixed_samples(batch, imagined)
    real_count = batch.numel()
    weights = samples[WEIGHT_KEY]
    assert torch.all(weights[:real_count] == 1.0)
    expected = 0.8 * 0.5 if weight_imagined else 1.0
    torch.testing.assert_close(weights[real_count:], torch.full_like(weights[real_count:], expected))
    assert samples.numel() == real_count + int((imagined["weight"] > 0).sum())


def test_weighted_loss_equals_the_weighted_mean_of_per_sample_losses() -> None:
    torch.manual_seed(1)
    model = _model()
    with torch.no_grad():
        batch = EnvFactory("CartPole-v1", num_envs=4).make(seed=1).rollout(16, model.actor, break_when_any_done=False)
    samples = model.add_advantages(batch).reshape(-1)
    weights = torch.rand(samples.numel())
    samples.set(WEIGHT_KEY, weights)
    terms = model.weighted_loss_terms(samples)
    per_sample = model.loss_module(samples)["loss_critic"].reshape(-1)
    torch.testing.assert_close(terms["loss_critic"], (per_sample * weights).sum() / weights.sum())
    samples.set(WEIGHT_KEY, torch.cat([torch.ones(32), torch.zeros(samples.numel() - 32)]))
    torch.testing.assert_close(model.weighted_loss_terms(samples)["loss_critic"], per_sample[:32].mean())


def test_mbppo_return_rises_on_cartpole() -> None:
    # One evaluation after 1,024 real frames (8 batches): 193.5 on seed 1, where a random policy scores about 22.
    cli = run_fit(*fit_args("cartpole_mbppo.yaml", "--model.total_frames", "1024", "--model.eval_every_frames", "1024",
                            "--seed_everything", "1"))
    client = MlflowClient(tracking_uri())
    run_id = cli.trainer.logger.run_id
    returns = [m.value for m in sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)]
    assert max(returns) > 150, returns  # a random policy scores about 22
    for key in ("imagination/rollouts", "world_model/confidence", "curiosity/beta", "curiosity/intrinsic_reward"):
        assert client.get_metric_history(run_id, key), key
    assert cli.model.imagined_frames > 0
