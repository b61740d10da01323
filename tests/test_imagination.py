"""Imagined rollouts: shapes and keys of real data, termination stops a trajectory, members propagate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from mbrl_lightning.imagination import imagine
from mbrl_lightning.world_models import GaussianEnsembleWorldModel
from mbrl_lightning.world_models.base import RawOutput, WorldModel


class DriftingModel(WorldModel):
    """Test double: x grows by 1 each step, reward = x, termination once x reaches 3."""

    def __init__(self) -> None:
        super().__init__(observation_size=1, action_size=2)

    def raw_output(self, inputs: torch.Tensor) -> RawOutput:
        x = inputs[:, :1]
        mean = torch.cat([torch.ones_like(x), x], -1).unsqueeze(0)
        done_logit = torch.where(x + 1 >= 3, 20.0, -20.0).unsqueeze(0)
        return RawOutput(mean=mean, done_logit=done_logit)

    def loss(self, transitions):
        raise AssertionError("not trained in these tests")


def random_policy(td: TensorDict) -> TensorDict:
    return td.set("action", F.one_hot(torch.randint(2, td.batch_size), 2))


def test_rollout_has_the_keys_of_real_data_and_stops_at_predicted_termination() -> None:
    starts = TensorDict({"observation": torch.tensor([[0.0], [1.0], [2.0]])}, [3])
    rollout = imagine(DriftingModel(), random_policy, starts, horizon=5)
    assert rollout.batch_size == (3, 5)
    for key in ["observation", "action", "is_real", "weight", ("next", "observation"), ("next", "reward"),
                ("next", "terminated"), ("next", "truncated"), ("next", "done")]:
        assert key in rollout.keys(True), key
    assert not rollout["is_real"].any()
    # Start 0 terminates on its 3rd step (x: 0 -> 1 -> 2 -> 3), start 2 on its first.
    assert rollout["weight"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert rollout["next", "terminated"][0, 2].item() and not rollout["next", "terminated"][0, 1].item()
    torch.testing.assert_close(rollout["next", "observation"][0, :3, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(rollout["next", "reward"][0, :3, 0], torch.tensor([0.0, 1.0, 2.0]))


def test_last_live_step_is_truncated_not_terminated() -> None:
    starts = TensorDict({"observation": torch.tensor([[-10.0]])}, [1])
    rollout = imagine(DriftingModel(), random_policy, starts, horizon=3)
    assert rollout["next", "truncated"][0, -1].item() and not rollout["next", "terminated"][0, -1].item()
    assert not rollout["next", "done"][0, :-1].any()


@pytest.mark.parametrize("propagation", ["random_member", "fixed_member", "mean"])
def test_ensemble_propagation_modes(propagation: str) -> None:
    torch.manual_seed(0)
    model = GaussianEnsembleWorldModel(3, 2, num_members=4, num_elites=4, hidden_sizes=(16,))
    starts = TensorDict({"observation": torch.randn(64, 3)}, [64])
    rollout = imagine(model, random_policy, starts, horizon=4, propagation=propagation)
    assert rollout["next", "observation"].shape == (64, 4, 3)
    with torch.no_grad():
        first = model.predict(starts["observation"], rollout["action"][:, 0]).next_observation  # [members, 64, 3]
    taken = rollout["next", "observation"][:, 0]
    if propagation == "mean":
        torch.testing.assert_close(taken, first.mean(0))
    else:
        matches = (first - taken.unsqueeze(0)).abs().amax(-1) < 1e-6  # which member produced each row
        assert (matches.sum(0) == 1).all()
        assert len(set(matches.float().argmax(0).tolist())) > 1  # several members in use


def test_fixed_member_keeps_one_member_per_trajectory() -> None:
    torch.manual_seed(1)
    model = GaussianEnsembleWorldModel(2, 2, num_members=3, num_elites=3, hidden_sizes=(8,))
    starts = TensorDict({"observation": torch.randn(32, 2)}, [32])
    rollout = imagine(model, random_policy, starts, horizon=3, propagation="fixed_member")
    members = []
    for t in range(3):
        with torch.no_grad():
            options = model.predict(rollout["observation"][:, t], rollout["action"][:, t]).next_observation
        members.append(((options - rollout["next", "observation"][:, t].unsqueeze(0)).abs().amax(-1) < 1e-6)
                       .float().argmax(0))
    assert torch.equal(members[0], members[1]) and torch.equal(members[1], members[2])
