"""Off-policy practice of every actor-critic learner: uniform warm-up actions, the update-to-data ratio."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything
from test_ddpg import _fit

from mbrl_lightning.algorithms import DDPG
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets import MLP


def _pendulum_ddpg(**overrides) -> DDPG:
    net = lambda inputs, outputs: MLP(inputs, outputs, hidden_sizes=(16,))  # noqa: E731
    settings = dict(
        actor_net=net, critic_net=net, batch_size=16, learning_starts=300, frames_per_batch=100, total_frames=400,
        updates_per_batch=2, noise_init=0.0, noise_end=0.0, eval_every_frames=0,
        # A vanishing actor step: the actor after the warm-up is the one it started with.
        actor_lr=1e-12,
    )
    settings.update(overrides)
    return DDPG(EnvFactory("Pendulum-v1", num_envs=1), **settings)


def _stored(model: DDPG) -> tuple[torch.Tensor, torch.Tensor]:
    stored = model.replay_buffer[: len(model.replay_buffer)]
    with torch.no_grad():
        policy_actions = model.actor(stored.select("observation").clone())["action"]
    return stored["action"], policy_actions


def test_the_warmup_draws_uniform_actions_inside_the_bounds_then_the_policy_acts() -> None:
    seed_everything(0)
    model = _pendulum_ddpg()
    _fit(model)
    actions, policy_actions = _stored(model)
    warmup, after = actions[:300].flatten(), actions[300:]
    assert warmup.min() >= -2.0 and warmup.max() <= 2.0
    # Uniform on [-2, 2]: mean 0, standard deviation 4 / sqrt(12) = 1.15, every quarter of the box visited.
    assert abs(float(warmup.mean())) < 0.25 and 1.0 < float(warmup.std()) < 1.3
    assert torch.histc(warmup, bins=4, min=-2.0, max=2.0).min() > 50
    assert not torch.allclose(actions[:300], policy_actions[:300], atol=0.1)
    torch.testing.assert_close(after, policy_actions[300:], atol=1e-4, rtol=0.0)
    assert not bool(model.warmup_policy.warming_up)


def test_a_policy_warmup_acts_with_the_untrained_actor() -> None:
    seed_everything(0)
    model = _pendulum_ddpg(warmup="policy")
    _fit(model)
    actions, policy_actions = _stored(model)
    assert model.warmup_policy is None
    torch.testing.assert_close(actions, policy_actions, atol=1e-4, rtol=0.0)


def test_the_update_to_data_ratio_sets_the_gradient_steps_and_carries_its_fraction() -> None:
    seed_everything(0)
    # 0.25 steps per frame on 10-frame batches: 2.5 per batch, from the batch that reaches 20 frames.
    model = _pendulum_ddpg(update_to_data=0.25, frames_per_batch=10, learning_starts=20, total_frames=100,
                           updates_per_batch=64)
    _fit(model)
    assert model.gradient_steps == 22 and model.update_credit == pytest.approx(0.5)  # 9 batches x 2.5


@pytest.mark.parametrize(("key", "value"), [("update_to_data", 0), ("update_to_data", -1.0), ("warmup", "noise")])
def test_bad_practice_settings_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"model.{key}"):
        _pendulum_ddpg(**{key: value})


def test_observation_statistics_standardise_both_networks_and_travel_in_the_state_dict() -> None:
    seed_everything(0)
    model = _pendulum_ddpg(observation_norm=True, learning_starts=100, total_frames=200)
    _fit(model)
    normalizer = model.observation_normalizer
    observations = model.replay_buffer[:200]["observation"]
    assert int(normalizer.count) == 200
    torch.testing.assert_close(normalizer.mean.float(), observations.mean(0), atol=1e-4, rtol=0)
    # Both networks read (observation - mean) / std; the critics inside the loss share the statistics.
    actor_body = model.actor.module[0].module
    torch.testing.assert_close(actor_body(observations[:5]), actor_body.net((observations[:5] - observations.mean(0))
                                                                            / observations.std(0)), atol=1e-3, rtol=0)
    assert model.loss_module.value_network.module.normalizer is normalizer
    fresh = _pendulum_ddpg(observation_norm=True, learning_starts=100, total_frames=200)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.observation_normalizer.m2, normalizer.m2)
    assert "observation_normalizer.mean" not in _pendulum_ddpg().state_dict()
