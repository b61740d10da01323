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
    if not isinstance(vector_env.single_observation_space, (gym.spaces.Box, gym.spaces.Discrete)):
        return False
    keys = set(env.observation_spec.keys(True, True)) | set(env.full_done_spec.keys(True, True))
    keys |= {"episode_reward", "step_count"} & set(env.full_observation_spec.keys())
    return keys == CARRIER_KEYS and set(env.full_reward_spec.keys(True, True)) == {"reward"}


class VectorEnvCollector:
    """Steps an ``EnvFactory`` env's gymnasium vector env directly and yields TorchRL-layout batches.

    TorchRL's ``GymWrapper`` + transforms + ``Collector`` spend most of a CartPole step on generic
    machinery (spec checks, info parsing of the final observation one copy at a time, transform
    chains, key bookkeeping). This collector does the same work with a few tensor operations per
    step: it calls the policy on the same input values in the same order (only the keys the policy
    reads, and the policy call that ``Collector`` makes once at start), converts actions with the env's own ``read_action``, and
    keeps the step counter, episode return and trajectory ids as the transforms and ``Collector``
    do. Batches have the same keys, shapes, dtypes and values as ``Collector``'s
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
        self._observation_spec = env.observation_spec["observation"]
        self._reward_dtype = env.reward_spec.dtype
        self._raw_reward_dtype = env.base_env.reward_spec.dtype
        self._policy_device = _device_of(policy)
        self._read_action = env.base_env.read_action
        # The policy sees only the keys it reads: a smaller TensorDict is cheaper at every module.
        in_keys = getattr(policy, "in_keys", None)
        self._policy_keys = [_flat(key) for key in in_keys] if in_keys else None
        self.next_traj_id = 0
        with torch.no_grad():
            self.carrier = self._with_traj_ids(env.reset())
            # TorchRL's Collector runs the policy once on a copy of its first input to learn the
            # output keys, outside any exploration context (so EGreedy draws noise while a
            # ProbabilisticActor takes its deterministic default); the same call keeps the draws in step.
            probe = self._act(self._policy_input())
        self._make_buffers(probe)

    @property
    def carrier(self) -> TensorDictBase:
        """The next input of the policy: observations, flags, step and return counters, trajectory ids."""
        carrier = TensorDict(batch_size=[self.num_envs])
        for key, value in self._carrier.items():
            carrier.set(key, value)
        return carrier

    @carrier.setter
    def carrier(self, carrier: TensorDictBase) -> None:
        self._carrier = dict(carrier.items(include_nested=True, leaves_only=True))

    def _policy_input(self) -> TensorDictBase:
        if self._policy_keys is None or any(key not in self._carrier for key in self._policy_keys):
            return self.carrier
        return TensorDict({key: self._carrier[key] for key in self._policy_keys}, batch_size=[self.num_envs])

    # ----------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[TensorDictBase]:
        while True:
            yield self.rollout()

    @torch.no_grad()
    def rollout(self) -> TensorDictBase:
        """One batch ``[num_envs, steps_per_batch]`` in TorchRL's layout."""
        with set_exploration_type(self.exploration_type):
            for t in range(self.steps_per_batch):
                acted = self._act(self._policy_input())
                for key, buffer in self._root_buffers:
                    buffer[:, t] = acted.get(key)
                for key, buffer in self._carrier_buffers:
                    buffer[:, t] = self._carrier[key]
                self._carrier = self._env_step(acted.get("action"), t)
        return self._batch.clone()

    def _make_buffers(self, acted: TensorDictBase) -> None:
        """Preallocate the batch: each step writes its tensors into a time slice (no stacking)."""
        n, steps = self.num_envs, self.steps_per_batch
        batch = TensorDict(batch_size=[n, steps])
        self._root_buffers, self._carrier_buffers = [], []
        policy_keys = {_flat(key) for key in acted.keys(include_nested=True, leaves_only=True)}
        for key in policy_keys | set(self._carrier):
            # What the policy wrote wins over the carrier, as in TorchRL (the policy updates it in place).
            value = acted.get(key) if key in policy_keys else self._carrier[key]
            buffer = torch.empty((n, steps, *value.shape[1:]), dtype=value.dtype)
            batch.set(key, buffer)
            (self._root_buffers if key in policy_keys else self._carrier_buffers).append((key, buffer))
        observation = self._observation_spec
        flag = ((1,), torch.bool)
        layout = {
            "observation": (tuple(observation.shape[1:]), observation.dtype),
            "reward": ((1,), self._reward_dtype),
            "terminated": flag,
            "truncated": flag,
            "done": flag,
            "step_count": ((1,), self._carrier["step_count"].dtype),
            "episode_reward": ((1,), self._reward_dtype),
        }
        self._next_buffers = {}
        for name, (shape, dtype) in layout.items():
            self._next_buffers[name] = torch.empty((n, steps, *shape), dtype=dtype)
            batch.set(("next", name), self._next_buffers[name])
        self._batch = batch

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
        """Start new episodes in every copy (used when in-flight episodes cannot be replayed)."""
        traj_ids = self._carrier[TRAJ_IDS]
        self.carrier = self.env.reset().set(TRAJ_IDS, traj_ids)

    # ----------------------------------------------------------------- one step
    def _with_traj_ids(self, carrier: TensorDictBase) -> TensorDictBase:
        ids = torch.arange(self.next_traj_id, self.next_traj_id + self.num_envs)
        self.next_traj_id += self.num_envs
        return carrier.set(TRAJ_IDS, ids)

    def _act(self, carrier: TensorDictBase) -> TensorDictBase:
        if self._policy_device is None or self._policy_device.type == "cpu":
            return self.policy(carrier)
        return self.policy(carrier.to(self._policy_device)).to("cpu")

    def _env_step(self, action: torch.Tensor, t: int) -> dict[Any, torch.Tensor]:
        """Step the copies; write the ``next`` entries of time ``t``; return the next carrier."""
        action = self._read_action(action)
        carrier = self._carrier
        observation, reward, terminated, truncated, info = self.vector_env.step(action)
        done = np.logical_or(terminated, truncated)
        any_done = bool(done.any())
        final_observation = observation
        if any_done:
            # Same-step autoreset: the step returns the first observation of the new episode and
            # keeps the true last one in the info, which is what ("next", "observation") must hold.
            final_observation = np.array(observation, copy=True)
            ended = np.flatnonzero(info["_final_obs"])
            final_observation[ended] = np.stack(info["final_obs"][ended])
            if done.all():
                # TorchRL resets the whole vector env again when every copy ended on the same step
                # (its VecGymEnvTransform treats that as a full reset), discarding the autoreset's
                # first observations; doing the same keeps the episodes identical.
                observation, _ = self.vector_env.reset()
        n = self.num_envs
        # The transforms sum returns before DoubleToFloat casts: add in the raw dtype, then cast.
        raw_reward = torch.from_numpy(np.asarray(reward)).to(self._raw_reward_dtype).view(n, 1)
        reward = raw_reward.to(self._reward_dtype)
        terminated_t = torch.from_numpy(np.asarray(terminated, dtype=bool)).view(n, 1)
        truncated_t = torch.from_numpy(np.asarray(truncated, dtype=bool)).view(n, 1)
        done_t = torch.from_numpy(done).view(n, 1)
        step_count = carrier["step_count"] + 1
        episode_reward = (carrier["episode_reward"] + raw_reward).to(self._reward_dtype)
        final_observation_t = self._observation(final_observation)
        values = {
            "observation": final_observation_t,
            "reward": reward,
            "terminated": terminated_t,
            "truncated": truncated_t,
            "done": done_t,
            "step_count": step_count,
            "episode_reward": episode_reward,
        }
        for name, value in values.items():
            self._next_buffers[name][:, t] = value
        traj_ids = carrier[TRAJ_IDS]
        ended_t = done_t.view(n)
        if any_done:
            new_ids = torch.arange(self.next_traj_id, self.next_traj_id + int(ended_t.sum()))
            self.next_traj_id += len(new_ids)
            traj_ids = traj_ids.masked_scatter(ended_t, new_ids)
        return {
            "observation": self._observation(observation) if any_done else final_observation_t,
            "done": torch.zeros_like(done_t),
            "terminated": torch.zeros_like(done_t),
            "truncated": torch.zeros_like(done_t),
            "step_count": step_count.masked_fill(done_t, 0),
            "episode_reward": episode_reward.masked_fill(done_t, 0.0),
            TRAJ_IDS: traj_ids,
        }

    def _observation(self, observation: np.ndarray) -> torch.Tensor:
        spec = self._observation_spec
        return torch.from_numpy(np.asarray(observation)).to(spec.dtype).view(spec.shape)


def _flat(key: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """TensorDict keys as ``items(include_nested=True)`` spells them: a 1-tuple is its string."""
    return key[0] if isinstance(key, tuple) and len(key) == 1 else key


def _device_of(policy: Any) -> torch.device | None:
    parameters = getattr(policy, "parameters", None)
    if parameters is None:
        return None
    first = next(iter(parameters()), None)
    return None if first is None else first.device
