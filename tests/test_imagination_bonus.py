"""The imagination-entropy bonus on SAC and TD3: it enters the critic target, whatever the actor-critic."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from lightning.pytorch import seed_everything
from test_ddpg import TASK_ID, _fit

from mbrl_lightning.algorithms import ImaginationSAC, ImaginationTD3
from mbrl_lightning.algorithms.ddpg_imagination import DEFAULT_LEARNER
from mbrl_lightning.curiosity import ImaginationEntropy
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.nets import MLP


def _model(cls: type, **overrides):
    net = lambda inputs, outputs: MLP(inputs, outputs, hidden_sizes=(16,))  # noqa: E731
    settings = dict(
        actor_net=net, critic_net=net, batch_size=16, frames_per_batch=20, total_frames=40, learning_starts=20,
        update_to_data=0.1, eval_every_frames=0, imagination=partial(ImaginationEntropy, rollouts=4, horizon=1),
        model_learning=partial(DEFAULT_LEARNER, updates_per_batch=2, batch_size=16, validation_size=8),
    )
    settings.update(overrides)
    return cls(EnvFactory(TASK_ID, num_envs=2), **settings)


def _target(model, sample) -> torch.Tensor:
    """The loss's critic target of ``sample`` with fixed draws of the next actions."""
    torch.manual_seed(1)
    if isinstance(model, ImaginationSAC):
        return model.loss_module._compute_target_v2(sample.clone())
    return model.loss_module.value_loss(sample.clone())[1]["target_value"]


@pytest.mark.parametrize("cls", [ImaginationSAC, ImaginationTD3])
def test_the_bonus_enters_the_critic_target(cls: type) -> None:
    seed_everything(0)
    model = _model(cls)
    _fit(model)
    sample = model.replay_buffer.sample(16)
    with_bonus, metrics = model.train_batch(sample.clone())
    bonus = (with_bonus["next", "reward"] - sample["next", "reward"]).squeeze(-1)
    assert bool((bonus > 0).all()) and metrics["imagination/bonus_to_reward"] > 0
    # The target moves by exactly the bonus: reward + bonus + gamma * (the same next-state value).
    torch.testing.assert_close(_target(model, with_bonus) - _target(model, sample), bonus, atol=1e-5, rtol=0)
    assert "world_model/val_loss" in model.learn_model(sample.reshape(2, 8))
