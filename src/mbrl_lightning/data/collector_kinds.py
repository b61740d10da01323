"""Collector kinds behind one interface: make, iterate, snapshot, restore, sync weights.

``CollectorStream`` sees only :class:`Collection`; each kind is a small adapter over the collector
that does the stepping. Adding a kind is one class and one entry of :data:`KINDS`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.envs import EnvBase

from mbrl_lightning.data import torchrl_internals
from mbrl_lightning.data.vector_collector import VectorEnvCollector, supports_lean_collection
from mbrl_lightning.envs.episode_replay import restore_episodes, snapshot_episodes
from mbrl_lightning.errors import ConfigurationError

log = logging.getLogger(__name__)

CollectorKind = Literal["auto", "lean", "torchrl", "multi_sync"]
Policy = Callable[[TensorDictBase], TensorDictBase]


@dataclass(frozen=True)
class CollectionSetup:
    """What every collector kind is built from.

    Args:
        make_env: builds the training env (in-process kinds).
        policy: the exploration policy.
        frames_per_batch: real env frames per batch, summed over the vectorised copies.
        make_worker_env: for ``multi_sync``: worker index -> a picklable builder of that worker's env.
        workers: for ``multi_sync``: the number of collector processes.
        worker_modules: modules the policy reads besides its own (a planner's world model); their
            weights go to ``multi_sync`` workers with the policy's.
    """

    make_env: Callable[[], EnvBase]
    policy: Policy
    frames_per_batch: int
    make_worker_env: Callable[[int], Callable[[], EnvBase]] | None = None
    workers: int = 2
    worker_modules: Mapping[str, nn.Module] = field(default_factory=dict)


class Collection(ABC):
    """One collector of some kind, as ``CollectorStream`` drives it."""

    @classmethod
    @abstractmethod
    def make(cls, setup: CollectionSetup) -> Collection:
        """Build the collector (envs, worker processes)."""

    @abstractmethod
    def __iter__(self) -> Iterator[TensorDictBase]:
        """Batches, one per ``next``, without end."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """The in-flight episodes as tensors and plain types; {} when this kind cannot keep them."""

    @abstractmethod
    def restore(self, state: dict[str, Any]) -> None:
        """Continue the episodes of a :meth:`snapshot` (or restart them where the env cannot replay them)."""

    def sync_weights(self) -> None:
        """Bring the acting policy up to date with the learner's weights (in-process: it is the same module)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Close envs and worker processes."""


class InProcessCollection(Collection):
    """A collector whose env lives in this process, so its episodes can be checkpointed and replayed."""

    def __init__(self, collector: Collector | VectorEnvCollector) -> None:
        self.collector = collector

    @classmethod
    def make(cls, setup: CollectionSetup) -> InProcessCollection:
        return cls.from_env(setup.make_env(), setup)

    @classmethod
    @abstractmethod
    def from_env(cls, env: EnvBase, setup: CollectionSetup) -> InProcessCollection:
        """The collector over an env already built."""

    @property
    @abstractmethod
    def carrier(self) -> TensorDictBase:
        """The collector's next policy input."""

    @carrier.setter
    @abstractmethod
    def carrier(self, value: TensorDictBase) -> None: ...

    @abstractmethod
    def load_collector_state(self, state: dict[str, Any]) -> None:
        """Restore the collector's own counters (trajectory ids) from a :meth:`snapshot`'s ``collector`` entry."""

    @abstractmethod
    def restart_episodes(self, state: dict[str, Any]) -> None:
        """Start new episodes in every copy, with trajectory ids continuing after those of ``state``."""

    def __iter__(self) -> Iterator[TensorDictBase]:
        return iter(self.collector)

    def snapshot(self) -> dict[str, Any]:
        episodes = snapshot_episodes(self.collector.env)
        if episodes is None:
            return {}
        carrier = self.carrier
        return {
            "carrier": carrier.clone().to_dict(),
            "batch_size": list(carrier.batch_size),
            "episodes": episodes,
            "collector": {key: value for key, value in self.collector.state_dict().items() if key != "env_state_dict"},
        }

    def restore(self, state: dict[str, Any]) -> None:
        if not restore_episodes(self.collector.env, state["episodes"]):
            log.warning("The environment did not replay its episodes exactly; in-flight episodes restart.")
            self.restart_episodes(state["collector"])
            return
        self.load_collector_state(state["collector"])
        self.carrier = TensorDict.from_dict(state["carrier"], batch_size=state["batch_size"])

    def shutdown(self) -> None:
        self.collector.shutdown()


class LeanCollection(InProcessCollection):
    """:class:`VectorEnvCollector`: steps the in-process vector env directly, TorchRL's batches at several times its speed."""

    collector: VectorEnvCollector

    @classmethod
    def from_env(cls, env: EnvBase, setup: CollectionSetup) -> LeanCollection:
        if not supports_lean_collection(env):
            env.close()
            raise ConfigurationError(
                "model.collector='lean': this env has keys or autoreset semantics the lean collector does not "
                "reproduce; use 'auto' or 'torchrl'."
            )
        return cls(VectorEnvCollector(env, setup.policy, setup.frames_per_batch))

    @property
    def carrier(self) -> TensorDictBase:
        return self.collector.carrier

    @carrier.setter
    def carrier(self, value: TensorDictBase) -> None:
        self.collector.carrier = value

    def load_collector_state(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state)

    def restart_episodes(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state)
        self.collector.restart_episodes()


class TorchRLCollection(InProcessCollection):
    """TorchRL's ``Collector`` over the TorchRL env (any env, any transforms)."""

    collector: Collector

    @classmethod
    def from_env(cls, env: EnvBase, setup: CollectionSetup) -> TorchRLCollection:
        collector = Collector(
            env,
            setup.policy,
            frames_per_batch=setup.frames_per_batch,
            total_frames=-1,
            # The policies carry no recurrent state, so no InitTracker transform is needed.
            auto_register_policy_transforms=False,
        )
        torchrl_internals.check_internals(collector)
        return cls(collector)

    @property
    def carrier(self) -> TensorDictBase:
        return torchrl_internals.carrier(self.collector)

    @carrier.setter
    def carrier(self, value: TensorDictBase) -> None:
        torchrl_internals.set_carrier(self.collector, value)

    def load_collector_state(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state, strict=False)
        # TorchRL's load_state_dict starts new trajectories (drawing fresh ids); undo that draw.
        if "traj_pool" in state:
            torchrl_internals.restore_trajectory_pool(self.collector, state["traj_pool"])

    def restart_episodes(self, state: dict[str, Any]) -> None:
        # The public reset keeps the carrier's collector entries; loading the state afterwards
        # restores the id counter and gives every copy a fresh trajectory id after the saved ones.
        self.collector.reset()
        self.collector.load_state_dict(state, strict=False)


class MultiSyncCollection(Collection):
    """TorchRL's ``MultiSyncCollector``: ``workers`` processes, each stepping its share of the env copies.

    Its envs live in other processes, so a checkpoint cannot hold their episodes: they restart on
    resume. The policy is copied into each worker; :meth:`sync_weights` sends the weights of the
    policy and of its ``worker_modules`` (buffers included, so a schedule kept in a buffer follows).
    """

    def __init__(self, collector: MultiSyncCollector) -> None:
        self.collector = collector

    @classmethod
    def make(cls, setup: CollectionSetup) -> MultiSyncCollection:
        if setup.make_worker_env is None:
            raise ValueError("collector='multi_sync' needs make_worker_env.")
        return cls(
            MultiSyncCollector(
                [setup.make_worker_env(index) for index in range(setup.workers)],
                worker_policy(setup),
                frames_per_batch=setup.frames_per_batch,
                total_frames=-1,
            )
        )

    def __iter__(self) -> Iterator[TensorDictBase]:
        # TorchRL stacks the workers' batches as [workers, envs per worker, time]; learners read
        # [env copies, time], as the in-process kinds give it.
        for batch in self.collector:
            yield batch.reshape(-1, batch.shape[-1])

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        log.warning("Collector processes cannot replay in-flight episodes; they restart.")

    def sync_weights(self) -> None:
        self.collector.update_policy_weights_()

    def shutdown(self) -> None:
        self.collector.shutdown()


class WithWorkerModules(TensorDictModuleBase):
    """A policy with the modules it reads registered as submodules, so their weights travel with its own.

    A planner refers to its world model as a plain attribute (the model's weights belong to the
    algorithm), which TorchRL's weight sync does not see. Pickled together, the worker's copy of the
    policy and of each module still refer to each other, and the sync updates both in place.

    Args:
        policy: the exploration policy.
        modules: name -> module the policy reads.
    """

    def __init__(self, policy: TensorDictModuleBase, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.policy = policy
        self.worker_modules = nn.ModuleDict(dict(modules))
        self.in_keys = list(getattr(policy, "in_keys", ["observation"]))
        self.out_keys = list(getattr(policy, "out_keys", ["action"]))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The policy's output."""
        return self.policy(tensordict)


def worker_policy(setup: CollectionSetup) -> Policy:
    """The policy ``multi_sync`` copies into its workers and whose weights (buffers included) it syncs."""
    return WithWorkerModules(setup.policy, setup.worker_modules) if setup.worker_modules else setup.policy


KINDS: dict[str, type[Collection]] = {"lean": LeanCollection, "torchrl": TorchRLCollection, "multi_sync": MultiSyncCollection}
COLLECTOR_KINDS: tuple[str, ...] = ("auto", *KINDS)


def make_collection(kind: CollectorKind, setup: CollectionSetup) -> Collection:
    """The collector of ``kind``; ``auto`` is ``lean`` wherever it is exact (checked on the env), else ``torchrl``."""
    if kind != "auto":
        return KINDS[kind].make(setup)
    env = setup.make_env()
    chosen = LeanCollection if supports_lean_collection(env) else TorchRLCollection
    return chosen.from_env(env, setup)
