"""A lean collector for in-process vector envs: TorchRL's batches without its per-step overhead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

# What the carrier of an ``EnvFactory`` env holds after a reset; any other key (an info reader's
# output, a transform's state) means the env does more per step than this collector reproduces.
CARRIER_KEYS = {"observation", "done", "terminated", "truncated", "step_count", "episode_reward"}


def vector_env_of(env: EnvBase) -> Any:
    """The in-process gymnasium vector env inside a TorchRL env made by ``EnvFactory``, or None."""
    import gymnasium as gym

    vector_env = getattr(getattr(env, "base_env", None), "_env", None)
    return vector_env if isinstance(vector_env, gym.vector.SyncVectorEnv) else None


def supports_lean_collection(env: EnvBase) -> bool:
    """True when :class:`VectorEnvCollector` yields exactly what TorchRL's ``Collector`` yields on ``env``.

    That needs an in-process gymnasium vector env with same-step autoreset, array observations under
    the ``observation`` key, and no per-step keys beyond the step and return counters.
    """
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

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
    step: it calls the policy on the same inputs in the same order (including the policy call that
    ``Collector`` makes once at start), converts actions with the env's own ``read_action``, and
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
        self.next_traj_id = 0
        with torch.no_grad():
            self.carrier = self._with_traj_ids(env.reset())
            # TorchRL's Collector runs the policy once on a copy of its first input to learn the
            # output keys; doing the same keeps the random draws (exploration noise) in step.
            with set_exploration_type(exploration_type):
                self._act(self.carrier.copy())

    # ----------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[TensorDictBase]:
        while True:
            yield self.rollout()

    @torch.no_grad()
    def rollout(self) -> TensorDictBase:
        """One batch ``[num_envs, steps_per_batch]`` in TorchRL's layout."""
        steps = []
        with set_exploration_type(self.exploration_type):
            for _ in range(self.steps_per_batch):
                step = self._act(self.carrier)
                steps.append(step)
                self.carrier = self._env_step(step)
        return torch.stack(steps, dim=1)

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
        traj_ids = self.carrier.get(("collector", "traj_ids"))
        self.carrier = self.env.reset().set(("collector", "traj_ids"), traj_ids)

    # ----------------------------------------------------------------- one step
    def _with_traj_ids(self, carrier: TensorDictBase) -> TensorDictBase:
        ids = torch.arange(self.next_traj_id, self.next_traj_id + self.num_envs)
        self.next_traj_id += self.num_envs
        return carrier.set(("collector", "traj_ids"), ids)

    def _act(self, carrier: TensorDictBase) -> TensorDictBase:
        if self._policy_device is None or self._policy_device.type == "cpu":
            return self.policy(carrier)
        return self.policy(carrier.to(self._policy_device)).to("cpu")

    def _env_step(self, step: TensorDictBase) -> TensorDictBase:
        """Step the copies; write ``step["next"]``; return the next carrier (reset where done)."""
        action = self.env.base_env.read_action(step["action"])
        observation, reward, terminated, truncated, info = self.vector_env.step(action)
        done = np.logical_or(terminated, truncated)
        final_observation = observation
        if done.any():
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
        raw_reward = torch.as_tensor(reward).to(self._raw_reward_dtype).view(n, 1)
        reward = raw_reward.to(self._reward_dtype)
        terminated_t = torch.as_tensor(terminated).view(n, 1)
        truncated_t = torch.as_tensor(truncated).view(n, 1)
        done_t = terminated_t | truncated_t
        step_count = step["step_count"] + 1
        episode_reward = (step["episode_reward"] + raw_reward).to(self._reward_dtype)
        step.set(
            "next",
            TensorDict(
                {
                    "observation": self._observation(final_observation),
                    "reward": reward,
                    "terminated": terminated_t,
                    "truncated": truncated_t,
                    "done": done_t,
                    "step_count": step_count,
                    "episode_reward": episode_reward,
                },
                batch_size=[n],
            ),
        )
        traj_ids = step["collector", "traj_ids"]
        ended_t = done_t.view(n)
        if bool(ended_t.any()):
            new_ids = torch.arange(self.next_traj_id, self.next_traj_id + int(ended_t.sum()))
            self.next_traj_id += len(new_ids)
            traj_ids = traj_ids.masked_scatter(ended_t, new_ids)
        not_done = torch.zeros_like(done_t)
        return TensorDict(
            {
                "observation": self._observation(observation) if done.any() else step["next", "observation"],
                "done": not_done,
                "terminated": not_done.clone(),
                "truncated": not_done.clone(),
                "step_count": step_count.masked_fill(done_t, 0),
                "episode_reward": episode_reward.masked_fill(done_t, 0.0),
                "collector": {"traj_ids": traj_ids},
            },
            batch_size=[n],
        )

    def _observation(self, observation: np.ndarray) -> torch.Tensor:
        spec = self._observation_spec
        return torch.as_tensor(observation).to(spec.dtype).view(spec.shape)


def _device_of(policy: Any) -> torch.device | None:
    parameters = getattr(policy, "parameters", None)
    if parameters is None:
        return None
    first = next(iter(parameters()), None)
    return None if first is None else first.device
