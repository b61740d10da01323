"""Curiosity modules reward the unfamiliar; beta follows the trend of extrinsic returns."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from mbrl_lightning.curiosity import ICM, RND, AdaptiveBeta, EnsembleDisagreement, FixedBeta


def _transitions(observations: torch.Tensor, actions: int = 2) -> TensorDictBase:
    n = observations.shape[0]
    action = torch.nn.functional.one_hot(torch.randint(actions, (n,)), actions)
    next_observation = observations + 0.1 * action[:, :1].float() - 0.05
    return TensorDict(
        {"observation": observations, "action": action,
         "next": {"observation": next_observation, "reward": torch.zeros(n, 1), "terminated": torch.zeros(n, 1, dtype=torch.bool)}},
        [n],
    )


def _train(module, data: TensorDictBase, steps: int = 300) -> None:
    module.observe(data)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = sum(module.loss(data[torch.randint(data.numel(), (128,))]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("module_class", [RND, ICM, EnsembleDisagreement])
def test_reward_falls_on_trained_states_and_stays_high_on_new_ones(module_class) -> None:
    torch.manual_seed(0)
    familiar = _transitions(torch.randn(1024, 4) * 0.3)
    novel = _transitions(torch.randn(512, 4) * 0.3 + 4.0)
    module = module_class(4, 2)
    module.observe(familiar)
    before = module.intrinsic_reward(familiar).mean()
    _train(module, familiar)
    after = module.intrinsic_reward(familiar).mean()
    assert after < before / 3, (before, after)
    assert module.intrinsic_reward(novel).mean() > 3 * after


def test_rewards_are_scaled_by_their_running_spread() -> None:
    torch.manual_seed(1)
    data = _transitions(torch.randn(512, 4))
    module = RND(4, 2)
    module.observe(data)
    rewards = module.intrinsic_reward(data)
    assert 0.3 < rewards.std().item() < 3.0


def test_adaptive_beta_rises_while_returns_fall_and_falls_while_they_rise() -> None:
    falling, rising = AdaptiveBeta(value=0.2, rate=0.05, window=5), AdaptiveBeta(value=0.2, rate=0.05, window=5)
    for step in range(30):
        falling.update(100.0 - 3 * step)
        rising.update(10.0 + 3 * step)
    assert falling.value > 0.2 > rising.value


def test_adaptive_beta_stays_within_bounds_and_ignores_flat_returns() -> None:
    beta = AdaptiveBeta(value=0.5, min_value=0.1, max_value=0.6, rate=0.5, window=3)
    for step in range(50):
        beta.update(-float(step))
    assert beta.value == pytest.approx(0.6)
    flat = AdaptiveBeta(value=0.3, window=3)
    for _ in range(20):
        flat.update(42.0)
    assert flat.value == pytest.approx(0.3)
    restored = AdaptiveBeta(value=0.0, window=3)
    restored.load_state_dict(beta.state_dict())
    assert restored.value == beta.value and list(restored.history) == list(beta.history)


def test_fixed_beta_never_moves() -> None:
    beta = FixedBeta(0.3)
    for step in range(20):
        beta.update(-float(step))
    assert beta.value == 0.3
