"""MCTS collection can act by sampled root visits (AlphaZero's self-play); evaluation stays greedy."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from tensordict import TensorDict
from torchrl.data import OneHot

from mbrl_lightning.algorithms.mcts_agent import VisitSampling
from mbrl_lightning.loading import build_module
from mbrl_lightning.planners import MCTSPlanner
from mbrl_lightning.planners.dynamics import KnownDynamics


def branch_planner() -> MCTSPlanner:
    """Both actions pay 1; the state action 1 leads to is worth more, so it gets most visits."""
    planner = MCTSPlanner(OneHot(2), num_simulations=12, rollout_horizon=0, gamma=0.5,
                          value_fn=lambda observation: observation[:, 1])
    planner.dynamics = KnownDynamics(
        lambda o, a: torch.stack([o[:, 0] + 1, a.argmax(-1).to(o.dtype)], -1),
        lambda o, a, n: torch.ones(o.shape[0], 1),
    )
    return planner


def test_sampled_actions_follow_root_visits_and_greedy_ones_do_not_vary() -> None:
    torch.manual_seed(0)
    planner = branch_planner()
    observation = torch.zeros(400, 2)
    visits, _, _ = planner.search(observation[:1])
    share = float(visits[0, 1] / visits[0].sum())
    assert 0.5 < share < 1.0
    greedy = planner(TensorDict({"observation": observation}, [400]))["action"].long().argmax(-1)
    assert greedy.tolist() == [1] * 400
    sampled = VisitSampling(planner, temperature=1.0)(TensorDict({"observation": observation}, [400]))["action"]
    assert OneHot(2).is_in(sampled)
    assert abs(float(sampled.long().argmax(-1).float().mean()) - share) < 0.08
    # A low temperature sharpens the visits towards the most visited action.
    cold = VisitSampling(planner, temperature=0.25)(TensorDict({"observation": observation}, [400]))["action"]
    assert float(cold.long().argmax(-1).float().mean()) > share + 0.05


def test_the_cartpole_config_collects_by_sampled_visits_and_evaluates_greedily() -> None:
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "cartpole_mcts.yaml").read_text())
    module = build_module(config)
    assert isinstance(module.exploration_policy.planner, VisitSampling)
    assert module.exploration_policy.planner.temperature == 1.0
    assert module.exploration_policy.planner.planner is module.planner is module.eval_policy
    config["model"]["init_args"]["collect_temperature"] = 0.0
    greedy = build_module(config)
    assert greedy.exploration_policy.planner is greedy.planner
