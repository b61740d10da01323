"""One trajectory-sampling implementation: each member runs once, on its own rows; balanced members for planners."""

from __future__ import annotations

import torch
from torchrl.data import Bounded

from mbrl_lightning.imagination import TrajectorySampler
from mbrl_lightning.imagination.trajectory_sampling import predict_by_member, predict_elite_mean
from mbrl_lightning.planners import CEMPlanner, EnsembleDynamics
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, MLPWorldModel


def _ensemble() -> GaussianEnsembleWorldModel:
    torch.manual_seed(0)
    model = GaussianEnsembleWorldModel(3, 1, num_members=5, num_elites=3, hidden_sizes=(16,))
    model.select_elites(torch.tensor([0.1, 5.0, 0.2, 6.0, 0.3]))  # elites 0, 2, 4
    return model


class RowCounter:
    """Records the rows each call of a world model's network receives."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[int, ...]] = []
        network = model.network
        original = network.forward

        def counted(x, members=None):
            self.calls.append(tuple(x.shape[:2]))
            return original(x, members)

        network.forward = counted


def test_each_row_gets_its_members_prediction_and_each_member_runs_once_on_its_rows() -> None:
    model = _ensemble()
    observation, action = torch.randn(30, 3), torch.randn(30, 1)
    member = torch.tensor([0, 2, 4] * 8 + [2] * 6)  # member 2 has 14 rows, 0 and 4 have 8
    counter = RowCounter(model)
    rows = predict_by_member(model, observation, action, member)
    assert counter.calls == [(3, 14)], "one call; the three members used, each over at most its group's rows"
    with torch.no_grad():
        every = model.predict(observation, action)
    index = torch.arange(30)
    torch.testing.assert_close(rows.next_observation, every.next_observation[member, index])
    torch.testing.assert_close(rows.reward, every.reward[member, index])
    torch.testing.assert_close(rows.done_probability, every.done_probability[member, index])
    torch.testing.assert_close(rows.next_observation_std, every.next_observation_std[member, index])
    mean = predict_elite_mean(model, observation, action)
    torch.testing.assert_close(mean.next_observation, every.next_observation[[0, 2, 4]].mean(0))


def test_a_single_model_is_called_once_and_gives_its_own_prediction() -> None:
    model = MLPWorldModel(3, 1, hidden_sizes=(8,))
    observation, action = torch.randn(6, 3), torch.randn(6, 1)
    rows = predict_by_member(model, observation, action, torch.zeros(6, dtype=torch.long))
    with torch.no_grad():
        torch.testing.assert_close(rows.next_observation, model.predict(observation, action).next_observation[0])


def test_balanced_assignment_spreads_each_candidates_particles_over_the_elites() -> None:
    model = _ensemble()
    sampler = TrajectorySampler(model, "fixed_member", assignment="balanced")
    candidates, particles = 7, 3
    sampler.reset(candidates * particles, torch.device("cpu"))
    members = sampler.members(candidates * particles, torch.device("cpu")).view(candidates, particles)
    for row in members:
        assert sorted(row.tolist()) == [0, 2, 4], "one particle per elite in every candidate"
    shuffled = TrajectorySampler(model, "random_member", assignment="balanced")
    first, second = (shuffled.members(30, torch.device("cpu")) for _ in range(2))
    assert not torch.equal(first, second), "TS-1 draws members anew every step"
    for drawn in (first, second):
        assert torch.bincount(drawn, minlength=5)[[0, 2, 4]].tolist() == [10, 10, 10], "shares stay even"


def test_the_planner_scores_a_candidate_through_every_member_once() -> None:
    """CEM's particles of one candidate go to distinct members: with one particle per elite, a
    candidate's score is the mean over the elites (here: of the predicted reward of one step)."""
    model = _ensemble()
    planner = CEMPlanner(Bounded(-1.0, 1.0, shape=(1,)), horizon=1, population=4, elites=2, num_particles=3)
    planner.dynamics = EnsembleDynamics(model, propagation="fixed_member", sample_noise=False)
    observation = torch.randn(2, 3)
    actions = torch.rand(2, 4, 1, 1) * 2 - 1
    scores = planner.evaluate(observation, actions)
    with torch.no_grad():
        flat_observation = observation[:, None].expand(2, 4, 3).reshape(8, 3)
        reward = model.predict(flat_observation, actions.reshape(8, 1)).reward[[0, 2, 4]].mean(0)
    torch.testing.assert_close(scores, reward.view(2, 4))
