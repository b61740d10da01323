"""The lean in-process collector yields exactly TorchRL's batches, and is chosen where it is exact."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import RewardScaling
from torchrl.envs.utils import RandomPolicy
from torchrl.modules import AdditiveGaussianModule, EGreedyModule, QValueActor

from mbrl_lightning.algorithms.ppo import PPO
from mbrl_lightning.data import CollectorStream
from mbrl_lightning.data.collector_kinds import TorchRLCollection
from mbrl_lightning.data.vector_collector import VectorEnvCollector, supports_lean_collection
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError


def _q_policy(factory: EnvFactory):
    spec = factory.make(num_envs=1).full_action_spec_unbatched["action"]
    actor = QValueActor(nn.Linear(4, 2), in_keys=["observation"], spec=spec)
    return TensorDictSequential(actor, EGreedyModule(spec, eps_init=0.3, eps_end=0.3))


def _gaussian_policy(factory: EnvFactory):
    spec = factory.make(num_envs=1).full_action_spec_unbatched["action"]
    actor = TensorDictModule(nn.Linear(3, 1), in_keys=["observation"], out_keys=["action"])
    return TensorDictSequential(actor, AdditiveGaussianModule(spec, sigma_init=0.5, sigma_end=0.5))


def _ppo_policy(factory: EnvFactory):
    return PPO(factory, total_frames=1024, frames_per_batch=factory.num_envs * 8).exploration_policy


def _random_policy(factory: EnvFactory):
    return RandomPolicy(factory.make().full_action_spec)


CASES = {
    # Network policy with exploration noise drawn from torch's generator.
    "cartpole": (EnvFactory("CartPole-v1", num_envs=8), _q_policy),
    # A ProbabilisticActor sampling from a categorical distribution (PPO's policy).
    "cartpole_ppo": (EnvFactory("CartPole-v1", num_envs=8), _ppo_policy),
    # Continuous actions, and time-limit truncations every 7 steps (final observations from the info).
    "pendulum": (EnvFactory("Pendulum-v1", num_envs=3, max_episode_steps=7), _gaussian_policy),
    # Integer states and categorical actions (toy text).
    "cliffwalking": (EnvFactory("CliffWalking-v1", num_envs=4, max_episode_steps=10), _random_policy),
}


def _batches(kind: str, factory: EnvFactory, policy, frames_per_batch: int, count: int) -> list[TensorDictBase]:
    torch.manual_seed(11)
    env = factory.make(seed=5)
    if kind == "torchrl":
        collector = Collector(env, policy, frames_per_batch=frames_per_batch, total_frames=-1,
                              auto_register_policy_transforms=False)
    else:
        collector = VectorEnvCollector(env, policy, frames_per_batch)
    iterator = iter(collector)
    batches = [next(iterator) for _ in range(count)]
    collector.shutdown()
    return batches


@pytest.mark.parametrize("case", list(CASES))
def test_lean_collector_yields_torchrl_batches_exactly(case: str) -> None:
    factory, make_policy = CASES[case]
    torch.manual_seed(0)  # the network's initial weights decide whether episodes end within the batches
    policy = make_policy(factory)
    frames_per_batch = factory.num_envs * 6
    expected = _batches("torchrl", factory, policy, frames_per_batch, count=4)
    actual = _batches("lean", factory, policy, frames_per_batch, count=4)
    dones = sum(int(batch["next", "done"].sum()) for batch in expected)
    assert dones > 0, "the batches must cross episode ends"
    for want, got in zip(expected, actual):
        assert got.batch_size == want.batch_size
        assert set(got.keys(True, True)) == set(want.keys(True, True))
        for key in want.keys(True, True):
            assert got[key].dtype == want[key].dtype, key
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=str(key))


def test_auto_picks_the_lean_collector_only_where_it_is_exact() -> None:
    assert supports_lean_collection(EnvFactory("CartPole-v1", num_envs=2).make())
    # Taxi's info carries an action mask, which TorchRL reads into every step.
    assert not supports_lean_collection(EnvFactory("Taxi-v4", num_envs=2).make())
    # A transform the lean collector does not reproduce (here a step cap) sends it back to TorchRL.
    capped = EnvFactory("CartPole-v1", num_envs=2).make()
    capped.transform[1].max_steps = 5
    assert not supports_lean_collection(capped)
    with_extra = EnvFactory("CartPole-v1", num_envs=2).make()
    with_extra.append_transform(RewardScaling(loc=0.0, scale=2.0))
    assert not supports_lean_collection(with_extra)
    taxi = EnvFactory("Taxi-v4", num_envs=2)
    stream = CollectorStream(lambda: taxi.make(seed=0), _random_policy(taxi), 4, lambda: 8, collector="auto")
    batches = iter(stream)
    next(batches)
    assert isinstance(stream.collector, TorchRLCollection)
    lean = CollectorStream(lambda: taxi.make(seed=0), _random_policy(taxi), 4, lambda: 8, collector="lean")
    with pytest.raises(ConfigurationError, match="model.collector='lean'"):
        next(iter(lean))


def test_collector_choice_is_a_config_key_and_gives_the_same_run() -> None:
    shared = ("--model.total_frames", "512", "--model.learning_starts", "128", "--model.updates_per_batch", "4",
              "--model.eval_every_frames", "512", "--model.eval_episodes", "2", "--seed_everything", "2")
    runs = {kind: run_fit(*fit_args("cartpole_dqn.yaml", *shared, "--model.collector", kind)) for kind in ("lean", "torchrl")}
    assert isinstance(runs["lean"].model, type(runs["torchrl"].model))
    expected = runs["torchrl"].model.state_dict()
    for name, value in runs["lean"].model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
