"""DQN learns CartPole on a small budget; its parts behave as configured."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import Trainer
from mlflow.tracking import MlflowClient
from tensordict import TensorDict

from mbrl_lightning.algorithms import DQN
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets import MLP
from mbrl_lightning.tracking import tracking_uri


def _random_policy_return(episodes: int = 20) -> float:
    env = EnvFactory("CartPole-v1", num_envs=episodes).make(seed=123)
    rollout = env.rollout(500, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    first = done.float().argmax(-1)
    return rollout["next", "episode_reward"].squeeze(-1)[torch.arange(episodes), first].mean().item()


def test_dqn_return_rises_well_above_random() -> None:
    cli = run_fit(*fit_args("cartpole_dqn.yaml", "--model.total_frames", "5120", "--model.eval_every_frames", "1280",
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


def _target_equals_online(model: DQN) -> bool:
    online = model.loss_module.value_network_params.values(True, True)
    target = model.loss_module.target_value_network_params.values(True, True)
    return all(torch.equal(o, t) for o, t in zip(online, target))


def test_hard_target_copies_every_interval() -> None:
    model = DQN(EnvFactory("CartPole-v1"), target_update_interval=3, total_frames=10, frames_per_batch=1)
    copied = []
    for _ in range(9):
        with torch.no_grad():
            model.loss_module.value_network_params.apply(lambda p: p.add_(1.0))
        model.target_updater.step()
        copied.append(_target_equals_online(model))
    assert copied == [False, False, True] * 3


def test_target_equals_the_online_net_after_every_nth_gradient_step_of_training() -> None:
    """Through real training: after gradient steps 3, 6 and 9 the target is the online net, after no other."""
    model = DQN(EnvFactory("CartPole-v1"), q_net=lambda o, a: MLP(o, a, hidden_sizes=(16,)), batch_size=8,
                learning_starts=8, updates_per_batch=2, target_update_interval=3, total_frames=40, frames_per_batch=8,
                eval_every_frames=0, collector="lean")
    copied: list[bool] = []
    gradient_update = model.gradient_update

    def recorded_update(sample):
        metrics = gradient_update(sample)
        copied.append(_target_equals_online(model))
        return metrics

    model.gradient_update = recorded_update
    Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0).fit(model)
    assert copied == [step % 3 == 0 for step in range(1, 11)]



def test_eval_epsilon_replaces_greedy_actions_at_its_rate_with_draws_fixed_per_evaluation() -> None:
    env = EnvFactory("CartPole-v1", num_envs=1)
    observations = TensorDict({"observation": torch.zeros(4000, 4)}, batch_size=[4000])
    greedy_model = DQN(env, total_frames=10, frames_per_batch=2)
    assert greedy_model.eval_policy is greedy_model.q_actor
    model = DQN(env, total_frames=10, frames_per_batch=2, eval_epsilon=0.5)
    greedy = model.q_actor(observations.clone())["action"].argmax(-1)
    assert (greedy == greedy[0]).all()  # one observation: one greedy action
    first = model.eval_policy(observations.clone())["action"]
    assert (first.sum(-1) == 1).all()  # still one-hot
    changed = (first.argmax(-1) != greedy).float().mean().item()
    assert abs(changed - 0.25) < 0.03, changed  # half the steps draw uniformly, half of those the other action
    again = model.eval_policy(observations.clone())["action"]
    assert torch.equal(first, again)  # the same evaluation draws the same actions
    model.evaluations += 1
    assert not torch.equal(first, model.eval_policy(observations.clone())["action"])
    with pytest.raises(ConfigurationError, match=r"model.eval_epsilon=1.5: must lie in \[0, 1\]"):
        DQN(env, total_frames=10, frames_per_batch=2, eval_epsilon=1.5)


def _noisy_mlp(observation_size: int, num_actions: int) -> torch.nn.Module:
    from torchrl.modules import MLP as TorchRLMLP
    from torchrl.modules import NoisyLinear

    return TorchRLMLP(in_features=observation_size, out_features=num_actions, num_cells=[16], layer_class=NoisyLinear)


def test_eval_noise_acts_with_fresh_noise_each_step_and_leaves_the_training_draw_alone() -> None:
    torch.manual_seed(0)
    env = EnvFactory("CartPole-v1", num_envs=1)
    model = DQN(env, q_net=_noisy_mlp, total_frames=10, frames_per_batch=2, eval_noise=True)
    training_draw = {k: v.clone() for k, v in model.q_actor.state_dict().items() if k.endswith("epsilon")}
    observations = TensorDict({"observation": torch.randn(64, 4)}, batch_size=[64])
    policy = model.eval_policy
    first = policy(observations.clone())["action_value"]
    second = policy(observations.clone())["action_value"]
    assert not torch.allclose(first, second)  # a new draw at every step
    mean_weights = model.q_actor(observations.clone())["action_value"]  # outside RANDOM exploration: the mean weights
    assert not torch.allclose(first, mean_weights)
    again = model.eval_policy(observations.clone())["action_value"]
    torch.testing.assert_close(again, first)  # the same evaluation draws the same noise
    after = {k: v for k, v in model.q_actor.state_dict().items() if k.endswith("epsilon")}
    assert all(torch.equal(training_draw[k], after[k]) for k in training_draw)
    with pytest.raises(ConfigurationError, match=r"model.eval_noise=True: needs noisy layers"):
        DQN(env, total_frames=10, frames_per_batch=2, eval_noise=True)
