"""Monte-Carlo tree search over a model for discrete actions (MBRL tutorial, slide 5), all trees batched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor
from torchrl.data import OneHot, TensorSpec

from mbrl_lightning.errors import ConfigurationError, require
from mbrl_lightning.planners.dynamics import PlanningDynamics
from mbrl_lightning.planners.stats import PlanningStats

Selection = Literal["ucb1", "puct"]
# ``value_fn(observation [n, obs]) -> value [n]``, e.g. a learned value network.
ValueFn = Callable[[Tensor], Tensor]


class MCTSPlanner(TensorDictModuleBase):
    """MCTS with UCB1 or PUCT selection, expansion through the model, rollout or value-net leaves, backup.

    One tree per env copy; every simulation descends all trees together (one array op per depth),
    expands one leaf per tree with one batched model call, values all new leaves with one batched
    set of random rollouts (``num_rollouts`` each, ``rollout_horizon`` steps, optionally bootstrapped
    by ``value_fn``) and backs the discounted return up each path. Q-values are min-max normalised
    per tree before selection (as in MuZero), so one ``exploration`` constant suits any reward scale.
    The action taken is the root's most visited one. TorchRL has no tree search for this setting
    (its MCTS lives in torchrl.data.map for LLM/forest bookkeeping, not batched model-based search).

    Args:
        action_spec: the env's discrete action spec (one-hot or categorical; derived from the env).
        num_simulations: simulations (one expansion each) per action.
        exploration: the exploration constant ``c`` of UCB1 / PUCT.
        selection: ``ucb1`` (``Q + c sqrt(ln N / n)``) or ``puct`` (``Q + c p sqrt(N) / (1 + n)``, uniform prior).
        gamma: discount of rewards in the tree and the rollouts.
        rollout_horizon: steps of each random leaf rollout (0: value from ``value_fn`` alone).
        num_rollouts: random rollouts averaged per leaf.
        value_fn: optional value of the last rollout state (learned value net), added discounted.
        dynamics: set by the algorithm (or a known model).
    """

    def __init__(
        self,
        action_spec: TensorSpec,
        num_simulations: int = 50,
        exploration: float = 1.0,
        selection: Selection = "ucb1",
        gamma: float = 0.99,
        rollout_horizon: int = 20,
        num_rollouts: int = 4,
        value_fn: ValueFn | None = None,
        dynamics: PlanningDynamics | None = None,
    ) -> None:
        super().__init__()
        space = getattr(action_spec, "space", None)
        if not hasattr(space, "n"):
            raise ConfigurationError(
                f"planner: MCTS needs discrete actions, got {type(action_spec).__name__}; "
                "use CEMPlanner, MPPIPlanner or RandomShootingPlanner for continuous actions."
            )
        require(num_simulations >= 1, "planner.num_simulations", num_simulations, "must be a positive integer")
        require(exploration >= 0, "planner.exploration", exploration, "must be zero or positive")
        require(selection in ("ucb1", "puct"), "planner.selection", selection, "allowed values are 'ucb1', 'puct'")
        require(0.0 < gamma <= 1.0, "planner.gamma", gamma, "must lie in (0, 1]")
        require(rollout_horizon >= 0, "planner.rollout_horizon", rollout_horizon, "must be zero or positive")
        require(num_rollouts >= 1, "planner.num_rollouts", num_rollouts, "must be a positive integer")
        self.in_keys = ["observation"]
        self.out_keys = ["action"]
        self.num_actions = int(space.n)
        self.one_hot = isinstance(action_spec, OneHot)
        self.action_dtype = action_spec.dtype
        self.num_simulations = num_simulations
        self.exploration = exploration
        self.selection = selection
        self.gamma = gamma
        self.rollout_horizon = rollout_horizon
        self.num_rollouts = num_rollouts
        self.value_fn = value_fn
        self.dynamics = dynamics
        self.stats = PlanningStats()

    def model_action(self, index: Tensor, dtype: torch.dtype) -> Tensor:
        """Action indices as the model reads them: one-hot rows or a single index column."""
        if self.one_hot:
            return F.one_hot(index, self.num_actions).to(dtype)
        return index.unsqueeze(-1).to(dtype)

    @torch.no_grad()
    def search(self, observation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Root visit counts ``[envs, actions]``, root Q ``[envs, actions]`` and the tree size ``[envs]``."""
        if self.dynamics is None:
            raise RuntimeError("the planner has no dynamics: set planner.dynamics before planning")
        envs, size = observation.shape
        device, dtype = observation.device, observation.dtype
        nodes, actions = self.num_simulations + 1, self.num_actions
        # The tree's statistics live in NumPy: a tree step touches a few numbers per env copy, where
        # every torch call costs more in dispatch than the arithmetic (a third of the time per action).
        # States stay tensors on the model's device; each simulation moves one row of numbers per copy.
        real = np.float32 if dtype != torch.float64 else np.float64
        rows = np.arange(envs)
        state = observation.new_zeros(envs, nodes, size)
        state[:, 0] = observation
        terminal = np.zeros((envs, nodes), dtype=bool)
        child = np.full((envs, nodes, actions), -1, dtype=np.int64)
        visits = np.zeros((envs, nodes, actions), dtype=real)
        value_sum = np.zeros_like(visits)
        reward = np.zeros_like(visits)
        count = np.ones(envs, dtype=np.int64)
        q_min = np.full(envs, np.inf, dtype=real)
        q_max = np.full(envs, -np.inf, dtype=real)

        for _ in range(self.num_simulations):
            # ---- selection: descend every tree until an untried edge or a terminal child
            node = np.zeros(envs, dtype=np.int64)
            active = np.ones(envs, dtype=bool)
            path: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            expand_node = node.copy()
            expand_action = node.copy()
            expand = np.zeros(envs, dtype=bool)
            while active.any():
                action = self._select(visits[rows, node], value_sum[rows, node], q_min, q_max)
                path.append((node, action, active))
                nxt = child[rows, node, action]
                new_edge = active & (nxt < 0)
                expand_node = np.where(new_edge, node, expand_node)
                expand_action = np.where(new_edge, action, expand_action)
                expand |= new_edge
                active = active & (nxt >= 0) & ~terminal[rows, np.maximum(nxt, 0)]
                node = np.where(active, nxt, node)
            # ---- expansion: one model step for every tree (rows without a new edge are discarded)
            parent_state = state[torch.from_numpy(rows).to(device), torch.from_numpy(expand_node).to(device)]
            next_state, step_reward, step_terminal = self.dynamics.step(
                parent_state, self.model_action(torch.from_numpy(expand_action).to(device), dtype)
            )
            step_terminal = step_terminal.reshape(envs)
            # ---- evaluation: leaves reached through a terminal edge are worth 0 beyond its reward
            leaf_value = self._leaf_values(next_state.to(dtype)) * ~step_terminal
            step = torch.stack([step_reward.reshape(envs).to(dtype), step_terminal.to(dtype), leaf_value]).cpu().numpy()
            step_reward_np, step_terminal_np, leaf_value_np = step[0], step[1] > 0.5, step[2] * expand
            new = np.minimum(count, nodes - 1)
            where = rows[expand]
            state[torch.from_numpy(where).to(device), torch.from_numpy(new[expand]).to(device)] = (
                next_state[torch.from_numpy(expand).to(device)].to(dtype))
            terminal[where, new[expand]] = step_terminal_np[expand]
            child[where, expand_node[expand], expand_action[expand]] = new[expand]
            reward[where, expand_node[expand], expand_action[expand]] = step_reward_np[expand]
            count += expand
            # ---- backup
            ret = leaf_value_np
            for node_d, action_d, on_path in reversed(path):
                ret = np.where(on_path, reward[rows, node_d, action_d] + real(self.gamma) * ret, ret)
                visits[rows, node_d, action_d] += on_path
                value_sum[rows, node_d, action_d] += np.where(on_path, ret, 0.0).astype(real)
                q = value_sum[rows, node_d, action_d] / np.maximum(visits[rows, node_d, action_d], 1)
                q_min = np.where(on_path, np.minimum(q_min, q), q_min)
                q_max = np.where(on_path, np.maximum(q_max, q), q_max)
        root_visits = torch.from_numpy(visits[:, 0]).to(device)
        root_q = torch.from_numpy(value_sum[:, 0] / np.maximum(visits[:, 0], 1)).to(device)
        return root_visits, root_q, torch.from_numpy(count).to(device)

    def _select(self, visits: np.ndarray, value_sum: np.ndarray, q_min: np.ndarray, q_max: np.ndarray) -> np.ndarray:
        """UCB1 or PUCT over the actions of one node per tree; untried actions first, ties at random."""
        q = value_sum / np.maximum(visits, 1)
        spread = (q_max - q_min)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(spread > 0, (q - q_min[:, None]) / np.maximum(spread, 1e-12), 0.0).astype(visits.dtype)
        total = visits.sum(-1, keepdims=True)
        if self.selection == "ucb1":
            with np.errstate(divide="ignore"):
                bonus = self.exploration * np.sqrt(np.log(np.maximum(total, 1)) / np.maximum(visits, 1))
            score = np.where(visits > 0, q + bonus, 1e30)
        else:
            prior = 1.0 / self.num_actions
            score = np.where(visits > 0, q, 0.0)
            score = score + self.exploration * prior * np.sqrt(np.maximum(total, 1)) / (1 + visits)
        # The tie-breaking noise comes from torch's generator, so seeding torch seeds the search.
        noise = torch.rand(visits.shape, dtype=torch.float32).numpy()
        return (score.astype(visits.dtype) + 1e-6 * noise).argmax(-1)

    def _leaf_values(self, leaf: Tensor) -> Tensor:
        """Mean discounted return of random rollouts from each leaf, plus the discounted value net."""
        envs = leaf.shape[0]
        # Without rollouts every copy of a leaf would get the same value: compute it once.
        k = self.num_rollouts if self.rollout_horizon > 0 else 1
        state = leaf.repeat_interleave(k, 0)
        n = state.shape[0]
        total = state.new_zeros(n)
        alive = torch.ones(n, dtype=torch.bool, device=state.device)
        discount = 1.0
        self.dynamics.reset(n, state.device)
        for _ in range(self.rollout_horizon):
            index = torch.randint(self.num_actions, (n,), device=state.device)
            state, step_reward, step_terminal = self.dynamics.step(state, self.model_action(index, state.dtype))
            total += discount * step_reward.reshape(n) * alive
            alive &= ~step_terminal.reshape(n)
            discount *= self.gamma
        if self.value_fn is not None:
            total += discount * self.value_fn(state).reshape(n) * alive
        total = torch.nan_to_num(total, nan=0.0, posinf=0.0, neginf=0.0)
        return total.view(envs, k).mean(1)

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase, temperature: float = 0.0) -> TensorDictBase:
        """Search from every env copy's observation and write the root's most visited action.

        With ``temperature > 0`` the action is drawn with probability ``visits^(1 / temperature)``
        instead (AlphaZero's self-play moves, Silver et al. 2017), for exploring collection only.
        """
        started = time.perf_counter()
        observation = tensordict.get("observation")
        batch_shape = observation.shape[:-1]
        flat = observation.reshape(-1, observation.shape[-1]).float()
        root_visits, root_q, _ = self.search(flat)
        if temperature > 0:
            best = torch.multinomial(root_visits ** (1.0 / temperature), 1).squeeze(-1)
        else:  # most visited; among equally visited actions the one with the higher value
            best = (root_visits + 1e-3 * torch.sigmoid(root_q)).argmax(-1)
        if self.one_hot:
            action = F.one_hot(best, self.num_actions).to(self.action_dtype).reshape(*batch_shape, self.num_actions)
        else:
            action = best.to(self.action_dtype).reshape(batch_shape)
        tensordict.set("action", action)
        rows = torch.arange(flat.shape[0])
        self.stats.record(time.perf_counter() - started, flat.shape[0], float(root_q[rows, best].mean()))
        return tensordict

    def reset(self) -> None:
        """Nothing carries over between searches (the tree is rebuilt from each new root)."""

    def pop_metrics(self) -> dict[str, float]:
        """``planner/*`` metrics since the last call: seconds per action, root value."""
        return self.stats.pop_metrics()
