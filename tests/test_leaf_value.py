"""The leaf-value network of tree search learns TD(lambda) returns of stored trajectories."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict

from mbrl_lightning.data import make_replay_buffer
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.planners.value import LeafValueLearner, trajectory_cuts

GAMMA = 0.9


def chain_transitions(length: int = 5, copies: int = 40) -> TensorDict:
    """A chain 0 -> 1 -> ... -> length with reward 1 per step; the step into ``length`` terminates."""
    position = torch.arange(length, dtype=torch.float32).repeat(copies).unsqueeze(-1)
    following = position + 1
    return TensorDict({
        "observation": position,
        "next": {
            "observation": following,
            "reward": torch.ones_like(position),
            "terminated": following == length,
        },
    }, batch_size=[position.shape[0]])


def adam_steps(learner: LeafValueLearner, lr: float) -> Callable[[torch.Tensor], None]:
    """One Adam step of the value network per loss, as the agent's ``gradient_step`` takes it."""
    optimizer = torch.optim.Adam(learner.network.parameters(), lr=lr)

    def optimize(loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return optimize


def test_values_converge_to_the_discounted_steps_left() -> None:
    torch.manual_seed(0)
    transitions = chain_transitions()
    buffer = make_replay_buffer(1_000)
    buffer.extend(transitions)
    learner = LeafValueLearner(1, hidden_sizes=(32, 32), gamma=GAMMA, tau=0.05, batch_size=64, updates_per_batch=100)
    learner.observe(transitions["observation"])
    optimize = adam_steps(learner, lr=3e-3)
    states = torch.arange(5, dtype=torch.float32).unsqueeze(-1)
    # From state s the chain pays 5 - s more rewards: V(s) = sum_{i < 5 - s} gamma^i.
    expected = torch.tensor([sum(GAMMA**i for i in range(5 - s)) for s in range(5)])
    with torch.no_grad():
        error_before = (learner.value(states) - expected).abs().max()
    metrics = {}
    for _ in range(15):
        metrics = learner.train_steps(buffer, optimize)
    with torch.no_grad():
        error_after = (learner.value(states) - expected).abs().max()
    assert error_after < 0.1 < error_before
    assert set(metrics) == {"loss/value", "planner/leaf_value_mean"}


def test_truncated_transitions_bootstrap() -> None:
    # One state that loops onto itself with reward 1, never terminating: V = 1 / (1 - gamma) = 10.
    torch.manual_seed(0)
    state = torch.zeros(64, 1)
    buffer = make_replay_buffer(100)
    buffer.extend(TensorDict({"observation": state, "next": {"observation": state, "reward": torch.ones(64, 1),
                                                             "terminated": torch.zeros(64, 1, dtype=torch.bool)}},
                             batch_size=[64]))
    learner = LeafValueLearner(1, hidden_sizes=(16,), gamma=GAMMA, tau=0.2, batch_size=32, updates_per_batch=200)
    optimize = adam_steps(learner, lr=1e-2)
    for _ in range(5):
        learner.train_steps(buffer, optimize)
    with torch.no_grad():
        assert learner.value(torch.zeros(1, 1)).item() == pytest.approx(10.0, abs=0.5)


def three_pieces() -> TensorDict:
    """Rows 0-2 one episode ending terminal; rows 3-4 a piece cut where row 5 starts elsewhere; row 5 truncated."""
    observation = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0, 20.0]).unsqueeze(-1)
    following = torch.tensor([1.0, 2.0, 3.0, 11.0, 12.0, 21.0]).unsqueeze(-1)
    terminated = torch.tensor([False, False, True, False, False, False]).unsqueeze(-1)
    truncated = torch.tensor([False, False, False, False, False, True]).unsqueeze(-1)
    return TensorDict({"observation": observation, "next": {
        "observation": following, "reward": torch.ones(6, 1), "terminated": terminated, "truncated": truncated,
        "done": terminated | truncated}}, batch_size=[6])


def constant_value_learner(lmbda: float, constant: float = 2.0) -> LeafValueLearner:
    """A learner whose target network says ``constant`` for every state."""
    learner = LeafValueLearner(1, hidden_sizes=(4,), gamma=0.9, lmbda=lmbda)
    last = [module for module in learner.target_network.modules() if isinstance(module, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, constant)
    return learner


def test_trajectory_cuts_mark_episode_ends_discontinuities_and_the_last_row() -> None:
    assert trajectory_cuts(three_pieces()).squeeze(-1).tolist() == [False, False, True, False, True, True]


@pytest.mark.parametrize(("lmbda", "expected"), [
    # G_t = 1 + 0.9 ((1 - lambda) 2 + lambda G_t+1), G = 1 at the terminal step, 1 + 0.9 * 2 at a cut.
    (0.5, [2.9575, 2.35, 1.0, 3.16, 2.8, 2.8]),
    (0.0, [2.8, 2.8, 1.0, 2.8, 2.8, 2.8]),
    (1.0, [1 + 0.9 + 0.81, 1.9, 1.0, 1 + 0.9 * 2.8, 2.8, 2.8]),
])
def test_lambda_returns_match_hand_computed_values(lmbda: float, expected: list[float]) -> None:
    returns = constant_value_learner(lmbda).returns(three_pieces())
    assert returns.squeeze(-1).tolist() == pytest.approx(expected, abs=1e-5)


def test_value_lambda_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"model.value_lambda"):
        LeafValueLearner(1, lmbda=1.5)
