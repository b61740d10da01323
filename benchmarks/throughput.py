"""Throughput of collection, training updates and imagination, one JSON line per measurement.

    python benchmarks/throughput.py                          # everything (a few minutes on 2 cores)
    python benchmarks/throughput.py --only collection --envs CartPole-v1 --num_envs 64
    python benchmarks/throughput.py --only imagination --device cuda --compile

Collection compares, on the same env id and copy count, raw gymnasium vector stepping (a sync
vector env driven by the same policy network in a numpy/torch loop, no TensorDicts) with the
project's collectors: TorchRL's ``Collector`` over ``EnvFactory``'s env (``torchrl``), the lean
in-process collector (``lean``, same batches) and, for costly envs, TorchRL's
``MultiSyncCollector`` with two worker processes (``multi_sync``). The paths are measured in
alternating rounds in one process and each reports its median, so a load spike on a shared
machine depresses all of them alike and the ratios to raw stay fair; absolute numbers do not.
Training reports gradient steps per second of the DQN loss and of a world model; imagination
reports imagined transitions per second of ``imagination.imagine`` for MLP and ensemble models, and
for ensembles also of the baseline that runs every member on every row (alternating rounds, as above).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from unittest import mock

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.envs.utils import RandomPolicy
from torchrl.modules import EGreedyModule, QValueActor
from torchrl.objectives import DQNLoss, ValueEstimators

from mbrl_lightning.algorithms.hard_update import EveryNHardUpdate
from mbrl_lightning.data.vector_collector import VectorEnvCollector, supports_lean_collection
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.envs.factory import validate_env_id
from mbrl_lightning.imagination import TrajectorySampler, imagine
from mbrl_lightning.imagination import rollout as rollout_module
from mbrl_lightning.imagination.trajectory_sampling import RowPrediction
from mbrl_lightning.nets import MLP
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, MLPWorldModel

EPSILON = 0.1
DEFAULT_CASES = [("CartPole-v1", 1), ("CartPole-v1", 16), ("CartPole-v1", 64),
                 ("HalfCheetahBulletEnv-v0", 4), ("ALE/MsPacman-v5", 4)]


def emit(record: dict) -> None:
    """Print one JSON line (numbers rounded for reading)."""
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


def register_suites(env_id: str) -> None:
    """Register the suites of ``env_id`` in this process (collector workers are fresh processes)."""
    if "Bullet" in env_id:
        import pybullet_envs_gymnasium  # noqa: F401
    validate_env_id(env_id)  # registers ALE ids


# ----------------------------------------------------------------------------- collection
class Policy:
    """One network acting in both worlds: on numpy observations (raw) and as a TensorDict module."""

    def __init__(self, factory: EnvFactory) -> None:
        probe = factory.make(num_envs=1)
        self.action_spec = probe.full_action_spec_unbatched["action"]
        observation_shape = probe.observation_spec_unbatched["observation"].shape
        probe.close()
        self.pixels = len(observation_shape) > 1
        self.discrete = hasattr(self.action_spec, "space") and hasattr(self.action_spec.space, "n")
        if self.pixels:  # Atari: random actions, the simulator is the cost being measured
            self.module = RandomPolicy(factory.make(num_envs=factory.num_envs).full_action_spec)
            self.kind = "random"
            return
        size = int(observation_shape[-1])
        if self.discrete:
            self.net = MLP(size, self.action_spec.space.n)
            actor = QValueActor(self.net, in_keys=["observation"], spec=self.action_spec)
            self.module = TensorDictSequential(actor, EGreedyModule(self.action_spec, eps_init=EPSILON, eps_end=EPSILON))
            self.kind = "mlp_256x256_egreedy"
        else:
            self.net = nn.Sequential(MLP(size, int(self.action_spec.shape[-1])), nn.Tanh())
            self.module = TensorDictModule(self.net, in_keys=["observation"], out_keys=["action"])
            self.kind = "mlp_256x256_tanh"
        self.rng = np.random.default_rng(0)

    @torch.no_grad()
    def raw(self, observation: np.ndarray, space: gym.Space) -> np.ndarray:
        """The same computation on numpy data: forward pass and exploration, no TensorDict."""
        if self.pixels:
            return space.sample()
        output = self.net(torch.from_numpy(np.asarray(observation, dtype=np.float32)))
        if not self.discrete:
            return output.numpy()
        greedy = output.argmax(-1).numpy()
        explore = self.rng.random(len(greedy)) < EPSILON
        return np.where(explore, self.rng.integers(0, output.shape[-1], len(greedy)), greedy)


def raw_stepper(factory: EnvFactory, policy: Policy, steps: int) -> Iterator[int]:
    """Raw gymnasium vector stepping with the policy in the loop; yields frames per call."""
    vector_env = gym.make_vec(factory.env_id, num_envs=factory.num_envs, vectorization_mode="sync",
                              vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    observation, _ = vector_env.reset(seed=0)
    while True:
        for _ in range(steps):
            observation, *_ = vector_env.step(policy.raw(observation, vector_env.action_space))
        yield steps * factory.num_envs


def collector_stepper(make: Callable[[], object]) -> Iterator[int]:
    """A collector's batches; yields frames per batch."""
    collector = make()
    for batch in collector:
        yield batch.numel()


def collection(env_id: str, num_envs: int, rounds: int, seconds: float, multi_sync: bool,
               batch_frames: int = 256) -> None:
    """Frames per second of raw gymnasium and of each collector, interleaved, with ratios to raw."""
    register_suites(env_id)
    factory = EnvFactory(env_id, num_envs=num_envs)
    policy = Policy(factory)
    steps = max(batch_frames // num_envs, 4)
    frames_per_batch = steps * num_envs
    paths: dict[str, Iterator[int]] = {
        "raw_gymnasium": raw_stepper(factory, policy, steps),
        "torchrl": collector_stepper(lambda: Collector(factory.make(seed=0), policy.module,
                                                       frames_per_batch=frames_per_batch, total_frames=-1,
                                                       auto_register_policy_transforms=False)),
    }
    lean = supports_lean_collection(factory.make(num_envs=1))
    if lean:
        paths["lean"] = collector_stepper(lambda: VectorEnvCollector(factory.make(seed=0), policy.module, frames_per_batch))
    if multi_sync and num_envs % 2 == 0:
        half = EnvFactory(env_id, num_envs=num_envs // 2)
        # A random policy is sized for the env batch: each worker steps half of the copies.
        worker_policy = RandomPolicy(half.make().full_action_spec) if policy.pixels else policy.module
        paths["multi_sync_2proc"] = collector_stepper(
            lambda: MultiSyncCollector([_EnvMaker(half, 0), _EnvMaker(half, 1)], worker_policy,
                                       frames_per_batch=frames_per_batch, total_frames=-1))
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for name, path in paths.items():
        next(path)  # start-up (env creation, worker processes) is not throughput
    for _ in range(rounds):
        for name, path in paths.items():
            frames, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                frames += next(path)
            rates[name].append(frames / (time.perf_counter() - started))
    raw = statistics.median(rates["raw_gymnasium"])
    for name, values in rates.items():
        rate = statistics.median(values)
        emit({"benchmark": "collection", "env_id": env_id, "num_envs": num_envs, "path": name,
              "policy": policy.kind, "frames_per_batch": frames_per_batch, "frames_per_s": rate,
              "ratio_to_raw": rate / raw, "rounds": rounds, "auto_picks": "lean" if lean else "torchrl"})


class _EnvMaker:
    """A picklable env builder for collector worker processes."""

    def __init__(self, factory: EnvFactory, index: int) -> None:
        self.factory, self.index = factory, index

    def __call__(self):
        register_suites(self.factory.env_id)
        return self.factory.make(seed=1000 * self.index)


# ----------------------------------------------------------------------------- training
def training(seconds: float, device: str) -> None:
    """Gradient steps per second: DQN (batch 64, MLP 256x256) and world models (batch 256)."""
    factory = EnvFactory("CartPole-v1")
    spec = factory.make().full_action_spec_unbatched["action"]
    actor = QValueActor(MLP(4, 2), in_keys=["observation"], spec=spec).to(device)
    loss_module = DQNLoss(actor, delay_value=True, action_space=spec)
    loss_module.make_value_estimator(ValueEstimators.TD0, gamma=0.99)
    updater = EveryNHardUpdate(loss_module, value_network_update_interval=10)  # DQN's target update
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3)
    batch = _transitions(64, device)

    def dqn_step() -> None:
        loss = loss_module(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        updater.step()

    emit({"benchmark": "training", "what": "dqn_update", "batch_size": 64, "device": device,
          "updates_per_s": _rate(dqn_step, seconds)})
    for name, model in _world_models(device).items():
        model_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        wm_batch = _transitions(256, device)
        model.observe(wm_batch)

        def model_step(model=model, model_optimizer=model_optimizer) -> None:
            loss = sum(value for key, value in model.loss(wm_batch).items() if key.startswith("loss_"))
            model_optimizer.zero_grad()
            loss.backward()
            model_optimizer.step()

        emit({"benchmark": "training", "what": f"{name}_update", "batch_size": 256, "device": device,
              "updates_per_s": _rate(model_step, seconds)})


def _transitions(n: int, device: str) -> TensorDict:
    action = torch.nn.functional.one_hot(torch.randint(2, (n,)), 2)
    return TensorDict({
        "observation": torch.randn(n, 4), "action": action,
        "next": {"observation": torch.randn(n, 4), "reward": torch.ones(n, 1),
                 "done": torch.zeros(n, 1, dtype=torch.bool), "terminated": torch.zeros(n, 1, dtype=torch.bool)},
    }, batch_size=[n], device=device)


def _world_models(device: str) -> dict[str, nn.Module]:
    return {
        "mlp_world_model": MLPWorldModel(4, 2, hidden_sizes=(200, 200)).to(device),
        "ensemble_world_model": GaussianEnsembleWorldModel(4, 2, num_members=5, num_elites=3,
                                                           hidden_sizes=(200, 200, 200)).to(device),
    }


def _rate(step: Callable[[], None], seconds: float) -> float:
    step()  # first call (allocation, lazy init) is not throughput
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


# ----------------------------------------------------------------------------- imagination
class AllMembersSampler(TrajectorySampler):
    """The imagination path before trajectory sampling was shared (main up to 2026-12): every member
    predicts every row, then one member's prediction is kept per row. Kept here only as the baseline."""

    def step(self, observation: torch.Tensor, action: torch.Tensor) -> RowPrediction:
        if self.propagation == "mean":
            return super().step(observation, action)
        member = self.members(observation.shape[0], observation.device)
        prediction = self.world_model.predict(observation, action)
        rows = torch.arange(observation.shape[0], device=observation.device)
        std = prediction.next_observation_std
        return RowPrediction(prediction.next_observation[member, rows], prediction.reward[member, rows],
                             prediction.done_probability[member, rows], None if std is None else std[member, rows])


def imagine_all_members(*args, **kwargs):
    """``imagine`` with the baseline sampler: the same rollout loop, only the member prediction differs."""
    with mock.patch.object(rollout_module, "TrajectorySampler", AllMembersSampler):
        return imagine(*args, **kwargs)


def imagination(seconds: float, device: str, starts: list[int], horizon: int, compile_model: bool,
                rounds: int = 5) -> None:
    """Imagined transitions per second of ``imagine`` with a CartPole-sized policy and world models.

    For ensembles the baseline path (every member on every row, ``path: all_members``) and the
    trajectory-sampling path (each member on its own rows, ``path: per_member_rows``) alternate in
    ``rounds`` rounds in this process; each reports its median and the ratio new/baseline.
    """
    spec = EnvFactory("CartPole-v1").make().full_action_spec_unbatched["action"]
    policy = QValueActor(MLP(4, 2, hidden_sizes=(64, 64)), in_keys=["observation"], spec=spec).to(device)
    variants = [False, True] if compile_model else [False]
    for name, model in _world_models(device).items():
        model.observe(_transitions(256, device))
        model.eval()
        paths = {"per_member_rows": imagine}
        if model.num_members > 1:
            paths["all_members"] = imagine_all_members
        for compiled in variants:
            if compiled:
                model.raw_output = torch.compile(model.raw_output, dynamic=True)
            for n in starts:
                start = TensorDict({"observation": torch.randn(n, 4, device=device)}, batch_size=[n])
                warmup: dict[str, float] = {}
                for path, run in paths.items():
                    compile_started = time.perf_counter()
                    run(model, policy, start, horizon)  # warm-up (and compilation)
                    warmup[path] = time.perf_counter() - compile_started
                rates: dict[str, list[float]] = {path: [] for path in paths}
                for _ in range(rounds):
                    for path, run in paths.items():
                        rate = _rate(lambda run=run: run(model, policy, start, horizon), seconds / rounds)
                        rates[path].append(rate * n * horizon)
                medians = {path: statistics.median(values) for path, values in rates.items()}
                for path, rate in medians.items():
                    record = {"benchmark": "imagination", "world_model": name, "members": model.num_members,
                              "elites": len(model.elite_indices), "path": path, "compiled": compiled,
                              "device": device, "starts": n, "horizon": horizon, "policy": "mlp_64x64_greedy",
                              "propagation": "random_member", "transitions_per_s": rate, "rounds": rounds,
                              "warmup_s": warmup[path]}
                    if "all_members" in medians:
                        record["ratio_to_all_members"] = rate / medians["all_members"]
                    emit(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["collection", "training", "imagination"], nargs="*")
    parser.add_argument("--envs", nargs="*", help="env ids for collection (default: the five standard cases)")
    parser.add_argument("--num_envs", type=int, nargs="*", help="copy counts, with --envs")
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds per collection case")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per path per round (and per training/imagination case)")
    parser.add_argument("--frames_per_batch", type=int, default=256,
                        help="frames per collector batch (at least 4 steps of every copy)")
    parser.add_argument("--no_multi_sync", action="store_true", help="skip the 2-process MultiSyncCollector")
    parser.add_argument("--device", default="cpu", help="device for training and imagination")
    parser.add_argument("--starts", type=int, nargs="*", default=[1024, 8192], help="imagination start states")
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time imagination with torch.compile'd models")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CLI's default is 1)")
    args = parser.parse_args()
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    only = set(args.only or ["collection", "training", "imagination"])
    if "collection" in only:
        cases = DEFAULT_CASES if not args.envs else [(e, n) for e in args.envs for n in (args.num_envs or [1])]
        for env_id, num_envs in cases:
            heavy = "Bullet" in env_id or env_id.startswith("ALE/")
            collection(env_id, num_envs, args.rounds, args.seconds, multi_sync=heavy and not args.no_multi_sync,
                       batch_frames=args.frames_per_batch)
    if "training" in only:
        training(args.seconds * 2, args.device)
    if "imagination" in only:
        imagination(args.seconds * 2 * args.rounds, args.device, args.starts, args.horizon, args.compile, args.rounds)


if __name__ == "__main__":
    main()
