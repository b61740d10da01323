"""The planners' fast ensemble rollout computes exactly what the per-step trajectory sampling computes."""

from __future__ import annotations

import pytest
import torch

from mbrl_lightning.planners import EnsembleDynamics
from mbrl_lightning.planners.rewards import no_termination, pendulum_reward
from mbrl_lightning.world_models import GaussianEnsembleWorldModel


def per_step_returns(dynamics: EnsembleDynamics, state: torch.Tensor, actions: torch.Tensor, gamma: float) -> torch.Tensor:
    """The reference: ``EnsembleDynamics.step`` (``predict_by_member`` every step), summed as planners sum."""
    n, horizon = actions.shape[:2]
    dynamics.reset(n, state.device)
    total = state.new_zeros(n)
    alive = torch.ones(n, dtype=torch.bool)
    discount = 1.0
    for t in range(horizon):
        state, reward, terminated = dynamics.step(state, actions[:, t])
        total += discount * reward.reshape(n) * alive
        alive &= ~terminated.reshape(n)
        discount *= gamma
    return total


# (members, elites, particles): every member in order; a subset of elites ranked out of order, with
# particles that do not share out evenly (padded groups).
ENSEMBLES = [(5, 5, 40), (4, 3, 10)]


@pytest.mark.parametrize(("members", "elites", "n"), ENSEMBLES)
@pytest.mark.parametrize("known_functions", [True, False])
def test_member_major_rollout_is_bit_identical_to_per_step_trajectory_sampling(
    members: int, elites: int, n: int, known_functions: bool
) -> None:
    torch.manual_seed(0)
    model = GaussianEnsembleWorldModel(3, 1, num_members=members, num_elites=elites, hidden_sizes=(16, 16))
    model.select_elites(torch.tensor([0.3, 5.0, 0.1, 0.2, 9.0][:members]))
    functions = {"reward_fn": pendulum_reward, "termination_fn": no_termination} if known_functions else {}
    dynamics = EnsembleDynamics(model, propagation="fixed_member", sample_noise=True, **functions)
    # Under the learned heads, the untrained termination head ends about half the particles, some mid-rollout.
    state, actions = torch.randn(n, 3), torch.randn(n, 6, 1)
    torch.manual_seed(1)
    fast = dynamics.rollout(state, actions, gamma=0.9)
    after_fast = torch.randn(4)
    torch.manual_seed(1)
    reference = per_step_returns(dynamics, state, actions, gamma=0.9)
    after_reference = torch.randn(4)
    assert torch.equal(fast, reference)
    # Both drew the same noise in the same order: the random stream ends in the same place.
    assert torch.equal(after_fast, after_reference)
