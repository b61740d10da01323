"""Planners find known optima, respect action bounds, and MCTS picks the better branch."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, OneHot

from mbrl_lightning.envs.arm import arm_dynamics, arm_reward, arm_tip
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.planners import (
    CEMPlanner,
    EnsembleDynamics,
    KnownDynamics,
    MCTSPlanner,
    MPPIPlanner,
    RandomShootingPlanner,
)
from mbrl_lightning.world_models import GaussianEnsembleWorldModel

# A toy problem whose best action sequence is known: the state is the time step, and the reward at
# step t is -(a - TARGETS[t])^2, so the optimum is TARGETS itself.
TARGETS = torch.tensor([[0.5], [-0.8], [0.1], [0.9]])


def clock(observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return observation + 1


def tracking_reward(observation: torch.Tensor, action: torch.Tensor, next_observation: torch.Tensor) -> torch.Tensor:
    target = TARGETS[observation[:, 0].long().clamp_max(len(TARGETS) - 1)]
    return -((action - target) ** 2).sum(-1, keepdim=True)


PLANNERS = {
    "random_shooting": lambda spec: RandomShootingPlanner(spec, horizon=4, population=50_000),
    "cem": lambda spec: CEMPlanner(spec, horizon=4, population=300, elites=30, iterations=6),
    "mppi": lambda spec: MPPIPlanner(spec, horizon=4, population=300, iterations=6, temperature=0.02, noise_std=0.3),
}


@pytest.mark.parametrize("name", PLANNERS)
def test_planner_finds_the_known_best_sequence(name: str) -> None:
    torch.manual_seed(0)
    planner = PLANNERS[name](Bounded(-1.0, 1.0, shape=(1,)))
    planner.dynamics = KnownDynamics(clock, tracking_reward)
    start = torch.zeros(3, 1)
    plan, predicted = planner.optimize(start, planner._initial_plans(3, None, start.device))
    tolerance = 0.2 if name == "random_shooting" else 0.08
    assert (plan - TARGETS).abs().max() < tolerance
    # The predicted return is the true return of the plan under the (exact) model.
    true_return = -((plan - TARGETS) ** 2).sum((-2, -1))
    torch.testing.assert_close(predicted, true_return, atol=5e-2, rtol=0)
    assert (true_return > -0.1).all()


@pytest.mark.parametrize("name", PLANNERS)
def test_chosen_action_respects_the_action_spec(name: str) -> None:
    torch.manual_seed(0)
    spec = Bounded(torch.tensor([-0.2, 0.5]), torch.tensor([0.1, 2.0]), shape=(2,))
    planner = PLANNERS[name](spec)
    planner.horizon = 1
    # The reward pulls both actions outside the box: the best feasible action sits on the bounds.
    planner.dynamics = KnownDynamics(clock, lambda o, a, n: -((a - torch.tensor([3.0, -3.0])) ** 2).sum(-1, keepdim=True))
    td = TensorDict({"observation": torch.zeros(5, 1), "step_count": torch.zeros(5, 1, dtype=torch.long)}, [5])
    action = planner(td)["action"]
    assert action.shape == (5, 2)
    assert spec.is_in(action)
    # Well on the side of the violated bounds (CEM's bounded std approaches a bound only gradually).
    assert (action[:, 0] > 0.0).all() and (action[:, 1] < 1.0).all()
    metrics = planner.pop_metrics()
    assert metrics["planner/seconds_per_action"] > 0


def test_warm_start_shifts_the_plan_and_forgets_it_at_episode_start() -> None:
    torch.manual_seed(0)
    planner = CEMPlanner(Bounded(-1.0, 1.0, shape=(1,)), horizon=4, population=300, elites=30, iterations=6)
    planner.dynamics = KnownDynamics(clock, tracking_reward)
    planner(TensorDict({"observation": torch.zeros(2, 1)}, [2]))
    shifted = planner._plans[2]
    assert (shifted[:, :3] - TARGETS[1:]).abs().max() < 0.1
    assert torch.equal(shifted[:, 3], torch.zeros(2, 1))
    first_step = torch.tensor([True, False])
    initial = planner._initial_plans(2, first_step, torch.device("cpu"))
    assert torch.equal(initial[0], torch.zeros(4, 1))
    assert torch.equal(initial[1], shifted[1])


def test_cem_plans_the_arm_to_its_target() -> None:
    torch.manual_seed(0)
    planner = CEMPlanner(Bounded(-0.1, 0.1, shape=(2,)), horizon=10, population=200, elites=20, iterations=3)
    planner.dynamics = KnownDynamics(arm_dynamics, arm_reward)
    state = torch.tensor([[torch.pi / 4, torch.pi / 4, 1.2, -0.5]])
    start_distance = (arm_tip(state[:, :2]) - state[:, 2:]).norm()
    for _ in range(30):
        action = planner(TensorDict({"observation": state}, [1]))["action"]
        state = arm_dynamics(state, action)
    assert start_distance > 1.0
    assert (arm_tip(state[:, :2]) - state[:, 2:]).norm() < 0.05


def two_branch_dynamics(observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """State ``[time, branch]``: the first action picks a branch for good."""
    choice = action.argmax(-1).to(observation.dtype)
    branch = torch.where(observation[:, 0] == 0, choice, observation[:, 1])
    return torch.stack([observation[:, 0] + 1, branch], -1)


def two_branch_reward(observation: torch.Tensor, action: torch.Tensor, next_observation: torch.Tensor) -> torch.Tensor:
    """Branch 0 pays 1 at once; branch 1 pays nothing at once but 10 three steps later."""
    greedy = (observation[:, 0] == 0) & (next_observation[:, 1] == 0)
    patient = (next_observation[:, 0] == 4) & (next_observation[:, 1] == 1)
    return (greedy.float() + 10 * patient.float()).unsqueeze(-1)


@pytest.mark.parametrize("selection", ["ucb1", "puct"])
def test_mcts_with_a_perfect_model_picks_the_better_branch(selection: str) -> None:
    torch.manual_seed(0)
    planner = MCTSPlanner(OneHot(2), num_simulations=40, selection=selection, rollout_horizon=4, num_rollouts=2)
    planner.dynamics = KnownDynamics(
        two_branch_dynamics, two_branch_reward, lambda o, a, n: (n[:, 0] >= 6).unsqueeze(-1)
    )
    action = planner(TensorDict({"observation": torch.zeros(4, 2)}, [4]))["action"]
    assert OneHot(2).is_in(action)
    assert action.long().argmax(-1).tolist() == [1, 1, 1, 1]
    visits, q, size = planner.search(torch.zeros(1, 2))
    assert visits.sum() == 40 and size.item() == 41
    # Q of branch 0 is its one reward; Q of branch 1 the discounted 10 (gamma 0.99, 4 steps).
    torch.testing.assert_close(q[0], torch.tensor([1.0, 10 * 0.99**3]))
    # Greedy one-step lookahead would choose branch 0: the rollouts make the difference.
    categorical = MCTSPlanner(Categorical(2), num_simulations=40, selection=selection, rollout_horizon=4)
    categorical.dynamics = KnownDynamics(
        lambda o, a: two_branch_dynamics(o, torch.nn.functional.one_hot(a[:, 0].long(), 2)),
        lambda o, a, n: two_branch_reward(o, a, n),
    )
    assert categorical(TensorDict({"observation": torch.zeros(1, 2)}, [1]))["action"].tolist() == [1]


def test_mcts_values_leaves_by_value_fn_without_rollouts() -> None:
    # Both actions pay the same reward; only the value of the state they lead to differs.
    torch.manual_seed(0)
    planner = MCTSPlanner(OneHot(2), num_simulations=20, rollout_horizon=0, gamma=0.5,
                          value_fn=lambda observation: 3.0 * observation[:, 1])
    planner.dynamics = KnownDynamics(two_branch_dynamics, lambda o, a, n: torch.ones(o.shape[0], 1))
    visits, q, _ = planner.search(torch.zeros(1, 2))
    assert planner(TensorDict({"observation": torch.zeros(1, 2)}, [1]))["action"].long().argmax(-1).tolist() == [1]
    # The first visit of each root edge: reward 1 plus half the value of its child (0 or 3).
    assert q[0, 1] > q[0, 0]
    assert visits[0, 1] > visits[0, 0]


def test_planners_refuse_the_wrong_kind_of_action_spec() -> None:
    with pytest.raises(ConfigurationError, match="discrete actions"):
        MCTSPlanner(Bounded(-1.0, 1.0, shape=(1,)))
    with pytest.raises(ConfigurationError, match="bounded continuous"):
        CEMPlanner(OneHot(2))
    with pytest.raises(ConfigurationError, match="planner.elites"):
        CEMPlanner(Bounded(-1.0, 1.0, shape=(1,)), population=10, elites=20)


@pytest.mark.parametrize("propagation", ["fixed_member", "random_member"])
def test_trajectory_sampling_sends_each_particle_through_one_member(propagation: str) -> None:
    torch.manual_seed(0)
    model = GaussianEnsembleWorldModel(3, 1, num_members=4, num_elites=3, hidden_sizes=(16,))
    model.select_elites(torch.tensor([0.1, 5.0, 0.2, 0.3]))
    dynamics = EnsembleDynamics(model, propagation=propagation, sample_noise=False)
    observation, action = torch.randn(10, 3), torch.randn(10, 1)
    dynamics.reset(10, observation.device)
    members_used = []
    for _ in range(2):
        next_observation, reward, terminated = dynamics.step(observation, action)
        every_member = model.predict(observation, action).next_observation  # [members, n, obs]
        match = (every_member - next_observation).abs().amax(-1) < 1e-5  # [members, n]
        assert match.sum(0).eq(1).all(), "each particle matches exactly one member"
        member = match.float().argmax(0)
        assert set(member.tolist()) <= {0, 2, 3}, "only elites propagate particles"
        members_used.append(member)
        assert reward.shape == (10, 1) and terminated.dtype == torch.bool
    if propagation == "fixed_member":
        assert torch.equal(members_used[0], members_used[1])


def test_sequence_returns_are_discounted_and_end_with_the_terminating_step() -> None:
    # Reward 1 per step; the step from state 1 to 2 terminates. With gamma 0.5 a 4-step candidate is
    # worth 1 + 0.5 from state 0 (the terminating step counts, nothing after it), 1 from state 1, and
    # 1 + 0.5 + 0.25 + 0.125 from state 5, which never reaches a terminal step.
    planner = CEMPlanner(Bounded(-1.0, 1.0, shape=(1,)), horizon=4, population=2, elites=1, gamma=0.5)
    planner.dynamics = KnownDynamics(clock, lambda o, a, n: torch.ones(o.shape[0], 1),
                                     termination_fn=lambda o, a, n: n[:, :1] == 2)
    start = torch.tensor([[0.0], [1.0], [5.0]])
    returns = planner.evaluate(start, torch.zeros(3, 2, 4, 1))
    torch.testing.assert_close(returns, torch.tensor([[1.5, 1.5], [1.0, 1.0], [1.875, 1.875]]))
