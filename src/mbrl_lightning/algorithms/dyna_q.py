"""Tabular Dyna-Q (Sutton 1991): Q-learning plus planning updates replayed from a learned table model."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import Tensor
from torch.nn import functional as F
from torchrl.data import Categorical, OneHot, TensorSpec
from torchrl.modules import EGreedyModule

from mbrl_lightning.algorithms.base import Metrics, RLModule
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError


class DynaQ(RLModule):
    """Dyna-Q: every real step updates Q, records the outcome in the model, then plans.

    Each real transition, in the order it happened, takes one Q-learning step, overwrites the
    model's entry for its (state, action) with the observed next state, reward and termination,
    then ``planning_steps`` previously seen (state, action) pairs are drawn uniformly and updated
    together from the model. The model keeps the last outcome only, so it is exact for
    deterministic envs (CliffWalking, Taxi) and a sample for stochastic ones (slippery FrozenLake).

    Args:
        env: the environment factory; states and actions must be discrete.
        alpha: step size of every Q-learning update, real or planned.
        gamma: discount factor.
        planning_steps: simulated updates from the model after each real step (0: plain Q-learning).
        eps_init: initial exploration rate.
        eps_end: final exploration rate.
        eps_anneal_frames: env frames over which epsilon decays linearly.
        initial_q: initial value of every Q-table entry; above the true values, untried actions look best.
        **kwargs: budget, collection and evaluation settings of :class:`RLModule`.
    """

    # The greedy policy reads the module's Q table, which collector processes would not receive.
    policy_runs_in_workers = False

    def __init__(
        self,
        env: EnvFactory,
        alpha: float = 0.1,
        gamma: float = 0.95,
        planning_steps: int = 10,
        eps_init: float = 0.1,
        eps_end: float = 0.1,
        eps_anneal_frames: int = 1,
        initial_q: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        # The CLI logs the whole resolved config; the logger must not see hparams again on resume.
        self.save_hyperparameters(ignore=["env"], logger=False)
        if not 0.0 < alpha <= 1.0:
            raise ConfigurationError(f"model.alpha={alpha}: must lie in (0, 1].")
        if not 0.0 <= gamma <= 1.0:
            raise ConfigurationError(f"model.gamma={gamma}: must lie in [0, 1].")
        if planning_steps < 0:
            raise ConfigurationError(f"model.planning_steps={planning_steps}: must be zero or positive.")
        if eps_anneal_frames < 1:
            raise ConfigurationError(f"model.eps_anneal_frames={eps_anneal_frames}: must be a positive integer.")
        num_states = _discrete_size(self.observation_spec, "states", env)
        num_actions = _discrete_size(self.action_spec, "actions", env)
        self.alpha = alpha
        self.gamma = gamma
        self.planning_steps = planning_steps

        # Buffers, so that the tables travel with state_dict into checkpoints and resume.
        self.register_buffer("q_table", torch.full((num_states, num_actions), float(initial_q)))
        self.register_buffer("model_next_state", torch.zeros(num_states, num_actions, dtype=torch.long))
        self.register_buffer("model_reward", torch.zeros(num_states, num_actions))
        self.register_buffer("model_terminated", torch.zeros(num_states, num_actions, dtype=torch.bool))
        self.register_buffer("model_seen", torch.zeros(num_states, num_actions, dtype=torch.bool))

        self.greedy = TensorDictModule(self._greedy_action, in_keys=["observation"], out_keys=["action"])
        self.exploration = EGreedyModule(
            self.action_spec, eps_init=eps_init, eps_end=eps_end, annealing_num_steps=eps_anneal_frames
        )
        self._exploration_policy = TensorDictSequential(self.greedy, self.exploration)

    @property
    def exploration_policy(self) -> TensorDictModuleBase:
        """Greedy on Q, followed by epsilon-greedy exploration."""
        return self._exploration_policy

    @property
    def eval_policy(self) -> TensorDictModuleBase:
        """Greedy on Q; ties go to the lowest action index."""
        return self.greedy

    @property
    def epsilon(self) -> float:
        """The current exploration rate."""
        return float(self.exploration.eps)

    def configure_optimizers(self) -> None:
        """No optimizer: the tables are updated in place, without gradients."""
        return None

    @torch.no_grad()
    def _greedy_action(self, observation: Tensor) -> Tensor:
        state = _to_index(observation, self.observation_spec)
        return _from_index(self.q_table[state].argmax(-1), self.action_spec)

    @torch.no_grad()
    def update(self, batch: TensorDictBase) -> Metrics:
        """Decay epsilon, then run Q-learning, model learning and planning on each real step in time order."""
        self.exploration.step(batch.numel())

        def in_time_order(key: str | tuple[str, str]) -> Tensor:
            return _time_major(batch[key], batch.batch_dims)

        states = _to_index(in_time_order("observation"), self.observation_spec)
        actions = _to_index(in_time_order("action"), self.action_spec)
        next_states = _to_index(in_time_order(("next", "observation")), self.observation_spec)
        rewards = in_time_order(("next", "reward")).reshape(-1).float()
        # Time-limit truncation is not termination: only a terminal next state stops bootstrapping.
        terminated = in_time_order(("next", "terminated")).reshape(-1)

        td_errors = torch.empty_like(rewards)
        planning_errors = []
        for i in range(rewards.numel()):
            state, action = states[i], actions[i]
            td_errors[i] = self._q_learning(state, action, next_states[i], rewards[i], terminated[i]).abs()
            self.model_next_state[state, action] = next_states[i]
            self.model_reward[state, action] = rewards[i]
            self.model_terminated[state, action] = terminated[i]
            self.model_seen[state, action] = True
            if self.planning_steps:
                planning_errors.append(self._plan().abs().mean())

        metrics = {
            "loss/td_error": td_errors.mean().item(),
            "train/epsilon": self.epsilon,
            "train/model_coverage": self.model_seen.float().mean().item(),
        }
        if planning_errors:
            metrics["loss/planning_td_error"] = torch.stack(planning_errors).mean().item()
        return metrics

    def _q_learning(self, state: Tensor, action: Tensor, next_state: Tensor, reward: Tensor,
                    terminated: Tensor) -> Tensor:
        """One Q-learning step on the given transitions, applied together; returns their TD errors.

        A pair drawn more than once from the model carries the same target each time, so writing
        the duplicates together amounts to one update of that entry.
        """
        # amax, not max(dim): the values-and-indices kernel stalls for milliseconds on small CPU tensors.
        bootstrap = self.q_table[next_state].amax(-1).masked_fill(terminated, 0.0)
        td_error = reward + self.gamma * bootstrap - self.q_table[state, action]
        self.q_table.index_put_((state, action), self.q_table[state, action] + self.alpha * td_error)
        return td_error

    def _plan(self) -> Tensor:
        """Q-learning on ``planning_steps`` seen (state, action) pairs drawn uniformly, with model outcomes."""
        seen = self.model_seen.flatten().nonzero().squeeze(-1)
        pairs = seen[torch.randint(seen.numel(), (self.planning_steps,), device=seen.device)]
        state, action = pairs.div(self.q_table.shape[1], rounding_mode="floor"), pairs % self.q_table.shape[1]
        return self._q_learning(
            state,
            action,
            self.model_next_state[state, action],
            self.model_reward[state, action],
            self.model_terminated[state, action],
        )


def _discrete_size(spec: TensorSpec, what: str, env: EnvFactory) -> int:
    """Number of values of a one-hot or integer spec with a single component."""
    if isinstance(spec, OneHot) or (isinstance(spec, Categorical) and spec.shape.numel() == 1):
        return int(spec.space.n)
    raise ConfigurationError(f"model: DynaQ needs a finite set of {what}; {env.env_id} has {spec}.")


def _to_index(value: Tensor, spec: TensorSpec) -> Tensor:
    """Integer indices from values encoded by ``spec`` (one-hot vectors or integers)."""
    if isinstance(spec, OneHot):
        return value.long().argmax(-1)  # argmax refuses bool one-hot vectors
    return value.reshape(value.shape[: value.ndim - len(spec.shape)]).long()


def _from_index(index: Tensor, spec: TensorSpec) -> Tensor:
    """Values encoded as ``spec`` expects them, from integer indices."""
    if isinstance(spec, OneHot):
        return F.one_hot(index, spec.space.n).to(spec.dtype)
    return index.reshape(index.shape + spec.shape).to(spec.dtype)


def _time_major(value: Tensor, batch_dims: int) -> Tensor:
    """Flatten the batch dims of a collector batch (time last) so that steps come in time order."""
    return value.movedim(batch_dims - 1, 0).reshape(-1, *value.shape[batch_dims:])
