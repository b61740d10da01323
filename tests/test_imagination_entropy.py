"""Imagination entropy: higher where forward-model rollouts diverge; the bonus and its metrics."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from mbrl_lightning.curiosity import ImaginationEntropy
from mbrl_lightning.world_models import LinearWorldModel

OBSERVATION_SIZE, ACTION_SIZE, NOISE = 3, 2, 0.3


def _linear_model(action_gain: float) -> LinearWorldModel:
    """next state = state + action_gain * action (first two features); no reward, never done.

    The model is fresh, so its normalisers are the identity and the weights act in env units.
    """
    model = LinearWorldModel(OBSERVATION_SIZE, ACTION_SIZE)
    layer = model.network[0]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.bias[-1] = -10.0  # termination logit: never done
        for i in range(ACTION_SIZE):
            layer.weight[i, OBSERVATION_SIZE + i] = action_gain
    return model


def _noisy_zero_policy(td: TensorDictBase) -> TensorDictBase:
    """The actor wants action 0; Gaussian noise of std NOISE, clamped to [-1, 1]."""
    action = (NOISE * torch.randn(td.batch_size[0], ACTION_SIZE)).clamp(-1.0, 1.0)
    return td.set("action", action)


def _module(action_gain: float, horizon: int = 1, **kwargs) -> ImaginationEntropy:
    return ImaginationEntropy(
        OBSERVATION_SIZE, ACTION_SIZE, world_model=lambda o, a: _linear_model(action_gain),
        rollouts=256, horizon=horizon, **kwargs,
    )


def test_entropy_is_higher_where_rollouts_diverge() -> None:
    torch.manual_seed(0)
    states = torch.randn(32, OBSERVATION_SIZE)
    converging = _module(action_gain=0.0).entropy(states, _noisy_zero_policy)
    diverging = _module(action_gain=1.0).entropy(states, _noisy_zero_policy)
    assert converging.shape == diverging.shape == (32,)
    # Actions do not move the state: every rollout lands on the same terminal state.
    assert converging.abs().max() < 1e-6
    # Two of three features spread by the noise std: mean over features ~ 2/3 * 0.3 (clamping trims a hair).
    assert diverging.mean().item() == pytest.approx(2 / 3 * NOISE, rel=0.05)
    assert (diverging > converging + 0.1).all()


def test_entropy_grows_with_the_imagined_horizon() -> None:
    torch.manual_seed(0)
    states = torch.randn(16, OBSERVATION_SIZE)
    one_step = _module(1.0, horizon=1).entropy(states, _noisy_zero_policy).mean().item()
    three_steps = _module(1.0, horizon=3).entropy(states, _noisy_zero_policy).mean().item()
    # Independent noise each step: the spread grows like the square root of the horizon.
    assert three_steps / one_step == pytest.approx(math.sqrt(3), rel=0.1)


def _transitions(states: torch.Tensor, next_states: torch.Tensor) -> TensorDict:
    n = states.shape[0]
    return TensorDict({"observation": states, "action": torch.zeros(n, ACTION_SIZE),
                       "next": {"observation": next_states, "reward": torch.zeros(n, 1)}}, batch_size=[n])


def test_bonus_is_the_squashed_sum_of_entropy_and_forward_error() -> None:
    torch.manual_seed(0)
    states = torch.randn(8, OBSERVATION_SIZE)
    surprising = states + torch.tensor([0.0, 0.0, 2.0])  # the model predicts no change: error 4/3 per state
    module = _module(1.0, entropy_beta=2.0, curiosity_beta=0.5, squash="tanh")
    torch.manual_seed(1)
    bonus, metrics = module.bonus(_transitions(states, surprising), _noisy_zero_policy)
    torch.manual_seed(1)
    entropy = module.entropy(states, _noisy_zero_policy)
    expected = torch.tanh(2.0 * entropy) + math.tanh(0.5 * 4 / 3)
    torch.testing.assert_close(bonus, expected)
    assert metrics["imagination/entropy"] == pytest.approx(entropy.mean().item())
    assert metrics["curiosity/forward_error_reward"] == pytest.approx(math.tanh(0.5 * 4 / 3))
    assert 0.0 < bonus.max().item() < 2.0


def test_bad_rollout_count_is_refused() -> None:
    from mbrl_lightning.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="model.imagination.rollouts"):
        ImaginationEntropy(OBSERVATION_SIZE, ACTION_SIZE, rollouts=1)


def test_intrinsic_reward_is_the_contract_normalisation_of_novelty_without_a_running_scale() -> None:
    torch.manual_seed(0)
    module = _module(action_gain=1.0, curiosity_beta=2.0)
    states = torch.randn(8, OBSERVATION_SIZE)
    actions = torch.rand(8, ACTION_SIZE) * 2 - 1
    transitions = TensorDict({"observation": states, "action": actions,
                              "next": {"observation": states + torch.randn(8, OBSERVATION_SIZE),
                                       "reward": torch.zeros(8, 1)}}, batch_size=[8])
    module.observe(transitions)
    # Its error is in scaled units already: the contract's normalize is the squash, no running std is kept.
    assert module.reward_scale is None and not any("reward_scale" in key for key in module.state_dict())
    expected = torch.tanh(2.0 * module.novelty(transitions))
    torch.testing.assert_close(module.intrinsic_reward(transitions), expected)
