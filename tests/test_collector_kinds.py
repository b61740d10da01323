"""Every collector kind behind one interface; TorchRL's private attributes that exact resume reads."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs.utils import RandomPolicy

from mbrl_lightning.data import CollectorStream, torchrl_internals
from mbrl_lightning.envs import EnvFactory

TRAJ_IDS = ("collector", "traj_ids")


def _collect(stream: CollectorStream, budget: dict[str, int]) -> list[TensorDictBase]:
    batches = []
    for batch in stream:
        batches.append(batch)
        budget["left"] -= batch.numel()
    return batches


def _stream(kind: str, budget: dict[str, int]) -> CollectorStream:
    factory = EnvFactory("CartPole-v1", num_envs=2)
    return CollectorStream(
        make_env=lambda: factory.make(seed=0),
        policy=RandomPolicy(factory.make().full_action_spec),
        frames_per_batch=8,
        frames_left=lambda: budget["left"],
        collector=kind,
    )


@pytest.mark.parametrize("kind", ["lean", "torchrl"])
def test_episodes_that_do_not_replay_restart_with_fresh_trajectory_ids(kind: str) -> None:
    """The restart path of a resume whose env did not replay its episodes (Atari with sticky actions)."""
    budget = {"left": 8}
    first = _stream(kind, budget)
    batches = _collect(first, budget)
    state = first.state_dict()
    assert state and (state["carrier"]["step_count"] > 0).all(), "the pass must end mid-episode"
    # A replay that does not reproduce the recorded last observation makes the episodes restart.
    for episode in state["episodes"]:
        episode["observation"] = episode["observation"] + 1.0
    saved_ids = int(batches[-1][TRAJ_IDS].max())

    budget["left"] = 16
    resumed = _stream(kind, budget)
    resumed.load_state_dict(state)
    continued = _collect(resumed, budget)
    assert len(continued) == 2
    first_step = continued[0][:, 0]
    assert (first_step["step_count"] == 0).all(), "every copy starts a new episode"
    assert (first_step[TRAJ_IDS] > saved_ids).all(), "new episodes get ids after the saved ones"
    # Later batches continue the restarted episodes.
    assert (continued[1][:, 0]["step_count"] > 0).any()


def test_torchrl_collector_still_has_the_private_state_exact_resume_reads() -> None:
    """Fails when a TorchRL release renames or retypes ``Collector._carrier`` or ``Collector._traj_pool``."""
    factory = EnvFactory("CartPole-v1", num_envs=2)
    collector = Collector(factory.make(seed=0), RandomPolicy(factory.make().full_action_spec), frames_per_batch=4,
                          total_frames=-1, auto_register_policy_transforms=False)
    torchrl_internals.check_internals(collector)
    carrier = torchrl_internals.carrier(collector)
    assert isinstance(carrier, TensorDictBase) and TRAJ_IDS in carrier.keys(True)
    assert set(carrier.keys()) >= {"observation", "step_count", "episode_reward"}
    # What the carrier holds is the next batch's first input.
    replaced = carrier.clone()
    replaced["step_count"] = torch.full_like(replaced["step_count"], 5)
    torchrl_internals.set_carrier(collector, replaced)
    batch = next(iter(collector))
    assert (batch[:, 0]["step_count"] == 5).all()
    # The trajectory counter survives state_dict/restore_trajectory_pool.
    counter = collector.state_dict()["traj_pool"]
    collector.load_state_dict({"frames": 0, "iter": 0}, strict=False)
    torchrl_internals.restore_trajectory_pool(collector, counter)
    assert collector.state_dict()["traj_pool"]["traj_id"] == counter["traj_id"]
    collector.shutdown()  # TorchRL drops the carrier on shutdown: the check must say so, not pass
    with pytest.raises(RuntimeError, match="_carrier"):
        torchrl_internals.check_internals(collector)
