"""The only place that reads or writes private attributes of TorchRL's ``Collector`` (TorchRL 0.14).

Exact resume needs the collector's next input (its carrier: observations, step and return counters,
trajectory ids) and its trajectory-id counter, and TorchRL exposes neither: ``state_dict`` leaves the
carrier out and ``load_state_dict`` starts new trajectories. ``tests/test_torchrl_internals.py``
fails when a TorchRL release renames or retypes what is used here.
"""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase
from torchrl.collectors import Collector

# Attribute names used below, checked by the test and by ``check_internals``.
CARRIER = "_carrier"
TRAJECTORY_POOL = "_traj_pool"


def check_internals(collector: Collector) -> None:
    """Raise a RuntimeError naming the attribute when this TorchRL no longer has what exact resume reads."""
    carrier = getattr(collector, CARRIER, None)
    if not isinstance(carrier, TensorDictBase):
        raise RuntimeError(f"torchrl Collector.{CARRIER} is no longer a TensorDict: exact resume needs updating")
    pool = getattr(collector, TRAJECTORY_POOL, None)
    if not (hasattr(pool, "state_dict") and hasattr(pool, "load_state_dict")):
        raise RuntimeError(f"torchrl Collector.{TRAJECTORY_POOL} has no state_dict/load_state_dict: exact resume needs updating")


def carrier(collector: Collector) -> TensorDictBase:
    """The collector's next policy input."""
    return getattr(collector, CARRIER)


def set_carrier(collector: Collector, value: TensorDictBase) -> None:
    """Make ``value`` the collector's next policy input (TorchRL has no public setter)."""
    setattr(collector, CARRIER, value)


def restore_trajectory_pool(collector: Collector, state: dict[str, Any]) -> None:
    """Set the next trajectory id to the one in ``state`` (a ``state_dict()["traj_pool"]``)."""
    getattr(collector, TRAJECTORY_POOL).load_state_dict(state)
