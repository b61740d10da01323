"""Save and restore in-flight episodes by replaying their actions, with no pickled env in a checkpoint.

Simulators rarely expose their state, and pickling them would make checkpoints execute code on
load. Each copy of a training env therefore records how its current episode began (the reset
seed or the random-generator state right before the reset) and the actions taken since. A resumed
run rebuilds the env, resets each copy the same way and replays the actions, which restores a
deterministic simulator exactly. The replayed final observation is compared with the recorded
one, so an env that is not deterministic under replay (e.g. Atari with sticky actions driven by an
internal generator) is detected and its episodes restart instead of continuing from a wrong state.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torchrl.envs import EnvBase

EpisodeSnapshot = dict[str, Any]


class EpisodeRecorder(gym.Wrapper):
    """Remembers how the current episode started and the actions taken since, so it can be replayed."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        # Resets happen every few steps of a vector env: skip the wrapper chain that ``unwrapped`` walks.
        self._base = env.unwrapped
        self._start: dict[str, Any] = {}
        self._actions: list[np.ndarray] = []
        self._last_observation: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        # Without a seed the reset draws from the env's generator: its state before the draw is the seed
        # (numpy builds a new state dict on every read, so it needs no copy).
        generator = None if seed is not None else self._base.np_random.bit_generator.state
        observation, info = self.env.reset(seed=seed, options=options)
        self._start = {"seed": seed, "generator": generator, "options": options}
        self._actions = []
        self._last_observation = observation
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        # numpy scalars (discrete actions) are immutable; arrays may be views the caller reuses.
        self._actions.append(action if isinstance(action, np.generic) else np.array(action, copy=True))
        result = self.env.step(action)
        self._last_observation = result[0]
        return result

    def snapshot(self) -> EpisodeSnapshot | None:
        """The current episode as checkpointable data (plain types and tensors); None if it cannot be."""
        # Array-like observations only: dict or tuple spaces would need a structured comparison.
        observation = np.asarray(self._last_observation)
        if not self._start or self._start["options"] is not None or observation.dtype == object:
            return None
        actions = np.stack(self._actions) if self._actions else np.zeros((0,), dtype=np.float32)
        return {
            "seed": self._start["seed"],
            "generator": self._start["generator"],
            "actions": torch.from_numpy(actions),
            "observation": torch.from_numpy(observation.copy()),
        }

    def restore(self, snapshot: EpisodeSnapshot) -> bool:
        """Replay ``snapshot``'s episode; True when the replay reproduced the recorded observation."""
        if snapshot["seed"] is None:
            # Set the state in place: envs hand the same generator object to their parts (pybullet's
            # robot draws its initial pose from it), which a fresh generator would not reach.
            self._base.np_random.bit_generator.state = snapshot["generator"]
        self.reset(seed=snapshot["seed"])
        for action in snapshot["actions"].numpy():
            self.step(action)
        return np.array_equal(np.asarray(self._last_observation), snapshot["observation"].numpy())


def recorders(env: EnvBase) -> list[EpisodeRecorder]:
    """The episode recorders of the gymnasium copies inside a TorchRL env made by ``EnvFactory``."""
    vector_env = getattr(env.base_env, "_env", None)
    copies = getattr(vector_env, "envs", [])
    return [copy_ for copy_ in copies if isinstance(copy_, EpisodeRecorder)]


def snapshot_episodes(env: EnvBase) -> list[EpisodeSnapshot] | None:
    """Snapshots of every copy's in-flight episode, or None when any copy cannot be replayed."""
    found = recorders(env)
    snapshots = [recorder.snapshot() for recorder in found]
    if not found or any(snapshot is None for snapshot in snapshots):
        return None
    return snapshots


def restore_episodes(env: EnvBase, snapshots: list[EpisodeSnapshot]) -> bool:
    """Replay every copy's episode; False (episodes must restart) if any copy did not come back exactly."""
    found = recorders(env)
    if len(found) != len(snapshots):
        return False
    return all([recorder.restore(snapshot) for recorder, snapshot in zip(found, snapshots)])
