"""DQN learns CartPole on a small budget; its parts behave as configured."""

from __future__ import annotations

import torch
from conftest import fit_args, run_fit
from mlflow.tracking import MlflowClient

from mbrl_lightning.algorithms import DQN
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.tracking import tracking_uri


def _random_policy_return(episodes: int = 20) -> float:
    env = EnvFactory("CartPole-v1", num_envs=episodes).make(seed=123)
    rollout = env.rollout(500, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    first = done.float().argmax(-1)
    return rollout["next", "episode_reward"].squeeze(-1)[torch.arange(episodes), first].mean().item()


def test_dqn_return_rises_well_above_random() -> None:
    cli = run_fit(*fit_args("cartpole_dqn.yaml", "--model.total_frames", "10240", "--model.eval_every_frames", "2560",
                            "--seed_everything", "1"))
    client = MlflowClient(tracking_uri())
    history = client.get_metric_history(cli.trainer.logger.run_id, "eval/return_mean")
    returns = [m.value for m in sorted(history, key=lambda m: m.step)]
    random_return = _random_policy_return()
    assert random_return < 40
    assert max(returns) > 5 * random_return, (returns, random_return)
    assert returns[-1] > 3 * random_return, (returns, random_return)


def test_epsilon_decays_linearly_with_frames() -> None:
    model = DQN(EnvFactory("CartPole-v1", num_envs=2), eps_init=1.0, eps_end=0.1, eps_anneal_frames=1000,
                total_frames=10, frames_per_batch=2)
    model.exploration.step(500)
    assert abs(model.epsilon - 0.55) < 1e-4
    model.exploration.step(10_000)
    assert abs(model.epsilon - 0.1) < 1e-6


def test_hard_target_copies_every_interval() -> None:
    model = DQN(EnvFactory("CartPole-v1"), target_update_interval=3, total_frames=10, frames_per_batch=1)
    online = model.loss_module.value_network_params
    target = model.loss_module.target_value_network_params
    with torch.no_grad():
        online.apply(lambda p: p.add_(1.0))
    differs = lambda: any((o != t).any() for o, t in zip(online.values(True, True), target.values(True, True)))
    for _ in range(3):
        model.target_updater.step()
        assert differs()
    model.target_updater.step()
    assert not differs()
