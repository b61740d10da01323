"""A lean collector for in-process vector envs: TorchRL's batches without its per-step overhead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import (
    DoubleToFloat,
    EnvBase,
    VecGymEnvTransform,
    ExplorationType,
    RewardSum,
    StepCounter,
    TransformedEnv,
    set_exploration_type,
)

TRAJ_IDS = ("collector", "traj_ids")
# What the carrier of an ``EnvFactory`` env holds after a reset; any other key (an info reader's
# output, a transform's state) means the env does more per step than this collector reproduces.
CARRIER_KEYS = {"observation", "done", "terminated", "truncated", "step_count", "episode_reward"}
# The transforms this collector reproduces, in this order (GymWrapper puts the first one for vector
# envs: the final-observation swap); any other transform means it cannot.
REPRODUCED_TRANSFORMS = (VecGymEnvTransform, StepCounter, RewardSum, DoubleToFloat)
# The ``next`` entries of a step, in TorchRL's batch.
NEXT_KEYS = ("observation", "reward", "terminated", "truncated", "done", "step_count", "episode_reward")


def vector_env_of(env: EnvBase) -> Any:
    """The in-process gymnasium vector env inside a TorchRL env made by ``EnvFactory``, or None."""
    import gymnasium as gym

    vector_env = getattr(getattr(env, "base_env", None), "_env", None)
    return vector_env if isinstance(vector_env, gym.vector.SyncVectorEnv) else None


def supports_lean_collection(env: EnvBase) -> bool:
    """True when :class:`VectorEnvCollector` yields exactly what TorchRL's ``Collector`` yields on ``env``.

    That needs an in-process gymnasium vector env with same-step autoreset, array observations under
    the ``observation`` key, exactly ``EnvFactory``'s transforms (an uncapped step counter, the
    return sum, the float cast) and no per-step keys beyond those.
    """
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    if not isinstance(env, TransformedEnv):
        return False
    transforms = list(env.transform)
    if tuple(type(t) for t in transforms) != REPRODUCED_TRANSFORMS or transforms[1].max_steps is not None:
        return False
    vector_env = vector_env_of(env)
    if vector_env is None or vector_env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
        return False
    if list(env.base_env.action_keys) != ["action"]:
        return False
    if not vector_env.copy:  # batches keep the arrays a step returns, so they must be fresh ones
        return False
    if not isinstance(vector_env.single_observation_space, (gym.spaces.Box, gym.spaces.Discrete)):
        return False
    keys = set(env.observation_spec.keys(True, True)) | set(env.full_done_spec.keys(True, True))
    keys |= {"episode_reward", "step_count"} & set(env.full_observation_spec.keys())
    return keys == CARRIER_KEYS and set(env.full_reward_spec.keys(True, True)) == {"reward"}


class VectorEnvCollector:
    """Steps an ``EnvFactory`` env's gymnasium vector env directly and yields TorchRL-layout batches.

    TorchRL's ``GymWrapper`` + transforms + ``Collector`` spend most of a CartPole step on generic
    machinery (spec checks, info parsing of the final observation one copy at a time, transform
    chains, key bookkeeping). This collector does the same work with a few numpy operations per
    step: it calls the policy on the same input values in the same order (only the keys the policy
    reads, and the policy call that ``Collector`` makes once at start), converts actions with the
    env's own action spec, and keeps the step counter, episode return and trajectory ids as the
    transforms and ``Collector`` do; each key of a batch is stacked once from the per-step arrays.
    Batches have the same keys, shapes, dtypes and values as ``Collector``'s
    (``tests/test_vector_collector.py``). Why not TorchRL configuration: see the README
    ("Collection speed"); disabling traj ids, transforms and policy checks left it near 20% of raw
    gymnasium speed.

    Args:
        env: a TorchRL env made by ``EnvFactory.make`` (already seeded).
        policy: the exploration policy; reads the carrier, writes ``action`` (and anything else).
        frames_per_batch: frames per batch over all copies; a multiple of the number of copies.
        exploration_type: the exploration mode the policy runs under (TorchRL's default: random).
    """

    def __init__(
        self,
        env: EnvBase,
        policy: Callable[[TensorDictBase], TensorDictBase],
        frames_per_batch: int,
        exploration_type: ExplorationType = ExplorationType.RANDOM,
    ) -> None:
        if not supports_lean_collection(env):
            raise ValueError("VectorEnvCollector needs an in-process EnvFactory env with plain observations.")
        self.env = env
        self.vector_env = vector_env_of(env)
        self.policy = policy
        self.exploration_type = exploration_type
        self.num_envs = int(env.batch_size[0])
        self.steps_per_batch = frames_per_batch // self.num_envs
        self._observation_shape = tuple(env.observation_spec["observation"].shape)
        self._observation_dtype = _numpy_dtype(env.observation_spec["observation"].dtype)
        self._reward_dtype = _numpy_dtype(env.reward_spec.dtype)
        self._raw_reward_dtype = _numpy_dtype(env.base_env.reward_spec.dtype)
        # After a step every copy's flags are down (ended copies were reset): one shared, never-written array.
        self._flags_down = np.zeros((self.num_envs, 1), dtype=bool)
        self._policy_device = _device_of(policy)
        self._action_spec = env.base_env.full_action_spec["action"]
        # The policy sees only the keys it reads: a smaller TensorDict is cheaper at every module.
        in_keys = getattr(policy, "in_keys", None)
        policy_keys = [_flat(key) for key in in_keys] if in_keys else []
        carrier_keys = CARRIER_KEYS | {TRAJ_IDS}
        self._policy_keys = policy_keys if policy_keys and all(key in carrier_keys for key in policy_keys) else None
        self.next_traj_id = 0
        with torch.no_grad():
            self.carrier = self._with_traj_ids(env.reset())
            # TorchRL's Collector runs the policy once on a copy of its first input to learn the
            # output keys, outside any exploration context (so EGreedy draws noise while a
            # ProbabilisticActor takes its deterministic default); the same call keeps the draws in step.
            probe = self._act(self._policy_input())
        # What the policy wrote wins over the carrier, as in TorchRL (the policy updates it in place).
        self._acted_keys = [_flat(key) for key in probe.keys(include_nested=True, leaves_only=True)]
        self._carried_keys = [key for key in self._state if key not in self._acted_keys]

    @property
    def carrier(self) -> TensorDictBase:
        """The next input of the policy: observations, flags, step and return counters, trajectory ids."""
        carrier = TensorDict(batch_size=[self.num_envs])
        for key, value in self._state.items():
            carrier.set(key, torch.from_numpy(value.copy()))
        return carrier

    @carrier.setter
    def carrier(self, carrier: TensorDictBase) -> None:
        # Kept as numpy arrays: a step computes on them in numpy, which costs far less per call
        # than torch's operator dispatch on these small arrays. Arrays are replaced, never written.
        self._state = {key: value.numpy().copy() for key, value in carrier.items(include_nested=True, leaves_only=True)}

    def _policy_input(self) -> TensorDictBase:
        if self._policy_keys is None:
            return self.carrier
        state = self._state
        return TensorDict({key: torch.from_numpy(state[key]) for key in self._policy_keys}, batch_size=[self.num_envs])

    # ----------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[TensorDictBase]:
        while True:
            yield self.rollout()

    @torch.no_grad()
    def rollout(self) -> TensorDictBase:
        """One batch ``[num_envs, steps_per_batch]`` in TorchRL's layout."""
        # Each step appends its values; one stack per key builds the batch (cheaper than a slice write per step).
        acted = {key: [] for key in self._acted_keys}
        carried = {key: [] for key in self._carried_keys}
        after = {key: [] for key in NEXT_KEYS}
        with set_exploration_type(self.exploration_type):
            for _ in range(self.steps_per_batch):
                output = self._act(self._policy_input())
                for key, values in acted.items():
                    values.append(output.get(key))
                for key, values in carried.items():
                    values.append(self._state[key])
                self._env_step(output.get("action"), after)
        columns = {key: torch.stack(values, dim=1) for key, values in acted.items()}
        columns.update((key, _batch_major(values)) for key, values in carried.items())
        columns.update((("next", key), _batch_major(values)) for key, values in after.items())
        return TensorDict(_nested(columns), batch_size=[self.num_envs, self.steps_per_batch])

    def shutdown(self) -> None:
        """Close the env (same call as TorchRL collectors)."""
        self.env.close()

    # ----------------------------------------------------------------- state for exact resume
    def state_dict(self) -> dict[str, Any]:
        """The next trajectory id, in the layout of TorchRL's trajectory pool."""
        return {"traj_pool": {"traj_id": torch.tensor(self.next_traj_id, dtype=torch.int32)}}

    def load_state_dict(self, state: dict[str, Any], strict: bool = False) -> None:
        """Restore the next trajectory id written by :meth:`state_dict` (or by TorchRL's Collector)."""
        if "traj_pool" in state:
            self.next_traj_id = int(state["traj_pool"]["traj_id"])

    def restart_episodes(self) -> None:
        """Start new episodes in every copy, with fresh trajectory ids (when in-flight episodes cannot be replayed)."""
        self.carrier = self._with_traj_ids(self.env.reset())

    # ----------------------------------------------------------------- one step
    def _with_traj_ids(self, carrier: TensorDictBase) -> TensorDictBase:
        ids = torch.arange(self.next_traj_id, self.next_traj_id + self.num_envs)
        self.next_traj_id += self.num_envs
        return carrier.set(TRAJ_IDS, ids)

    def _act(self, carrier: TensorDictBase) -> TensorDictBase:
        if self._policy_device is None or self._policy_device.type == "cpu":
            return self.policy(carrier)
        return self.policy(carrier.to(self._policy_device)).to("cpu")

    def _env_step(self, action: torch.Tensor, after: dict[str, list[np.ndarray]]) -> None:
        """Step the copies; append the ``next`` entries to ``after``; move the carrier on."""
        # What the env's read_action does for one action key, minus its per-call spec lookups.
        action = self._action_spec.to_numpy(action, safe=False)
        observation, reward, terminated, truncated, info = self.vector_env.step(action)
        n = self.num_envs
        terminated = np.asarray(terminated, dtype=bool).reshape(n, 1)
        truncated = np.asarray(truncated, dtype=bool).reshape(n, 1)
        done = terminated | truncated
        ended = np.flatnonzero(done)
        final_observation = observation
        if len(ended):
            # Same-step autoreset: the step returns the first observation of the new episode and
            # keeps the true last one in the info, which is what ("next", "observation") must hold.
            final_observation = np.array(observation, copy=True)
            for index in ended:  # a few copies a step: cheaper than stacking the info's object array
                final_observation[index] = info["final_obs"][index]
            if len(ended) == n:
                # TorchRL resets the whole vector env again when every copy ended on the same step
                # (its VecGymEnvTransform treats that as a full reset), discarding the autoreset's
                # first observations; doing the same keeps the episodes identical.
                observation, _ = self.vector_env.reset()
        state = self._state
        # The transforms sum returns before DoubleToFloat casts: add in the raw dtype, then cast
        # (numpy promotes and rounds as torch does).
        raw_reward = np.asarray(reward, dtype=self._raw_reward_dtype).reshape(n, 1)
        step_count = state["step_count"] + 1
        episode_reward = (state["episode_reward"] + raw_reward).astype(self._reward_dtype)
        final_observation = self._observation(final_observation)
        after["observation"].append(final_observation)
        after["reward"].append(raw_reward.astype(self._reward_dtype))
        after["terminated"].append(terminated)
        after["truncated"].append(truncated)
        after["done"].append(done)
        after["step_count"].append(step_count)
        after["episode_reward"].append(episode_reward)
        traj_ids = state[TRAJ_IDS]
        if len(ended):
            # New arrays: the ones above are in ``after`` and must keep their values.
            traj_ids, step_count, episode_reward = traj_ids.copy(), step_count.copy(), episode_reward.copy()
            traj_ids[ended] = np.arange(self.next_traj_id, self.next_traj_id + len(ended))
            self.next_traj_id += len(ended)
            step_count[ended] = 0
            episode_reward[ended] = 0
            final_observation = self._observation(observation)
        self._state = {
            "observation": final_observation,
            "done": self._flags_down,
            "terminated": self._flags_down,
            "truncated": self._flags_down,
            "step_count": step_count,
            "episode_reward": episode_reward,
            TRAJ_IDS: traj_ids,
        }

    def _observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=self._observation_dtype).reshape(self._observation_shape)


def _flat(key: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """TensorDict keys as ``items(include_nested=True)`` spells them: a 1-tuple is its string."""
    return key[0] if isinstance(key, tuple) and len(key) == 1 else key


def _batch_major(values: list[np.ndarray]) -> torch.Tensor:
    """Per-step arrays ``[num_envs, ...]`` as one contiguous ``[num_envs, steps, ...]`` tensor (a copy)."""
    return torch.from_numpy(np.array(values).swapaxes(0, 1).copy())


def _nested(columns: dict[str | tuple[str, ...], Any]) -> dict[str, Any]:
    """Nested dicts from nested keys: TensorDict builds those in one call, faster than a ``set`` per key."""
    tree: dict[str, Any] = {}
    for key, value in columns.items():
        *parents, leaf = (key,) if isinstance(key, str) else key
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=dtype).numpy().dtype


def _device_of(policy: Any) -> torch.device | None:
    parameters = getattr(policy, "parameters", None)
    if parameters is None:
        return None
    first = next(iter(parameters()), None)
    return None if first is None else first.device
