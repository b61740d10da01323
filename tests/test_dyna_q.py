"""Tabular Dyna-Q: planning speeds up learning, updates follow the transitions, tables checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import seed_everything
from mlflow.tracking import MlflowClient
from tensordict import TensorDict
from torchrl.data import Categorical, OneHot
from torchrl.envs.utils import check_env_specs

from mbrl_lightning.algorithms.dyna_q import DynaQ, _from_index, _to_index
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.tracking import tracking_uri

CLIFF_OPTIMUM = -13.0  # 13 steps along the cliff edge
TABLES = ("q_table", "model_next_state", "model_reward", "model_terminated", "model_seen")


def _cliff_module(planning_steps: int, **overrides) -> DynaQ:
    """CliffWalking with Sutton & Barto's settings (alpha 0.5, undiscounted, epsilon 0.1)."""
    settings = dict(alpha=0.5, gamma=1.0, planning_steps=planning_steps, eps_init=0.1, eps_end=0.1,
                    frames_per_batch=16, total_frames=20_000, eval_episodes=1, eval_max_steps=50)
    settings.update(overrides)
    return DynaQ(EnvFactory("CliffWalking-v1"), **settings)


def _episodes_to_optimum(planning_steps: int, seed: int, max_episodes: int) -> int | None:
    """Episodes finished when the greedy policy first walks the optimal path; None if not within max_episodes."""
    seed_everything(seed)
    model = _cliff_module(planning_steps)
    episodes = 0
    for batch in model.train_dataloader():
        model.frames += batch.numel()
        model.update(batch)
        finished = int(batch["next", "done"].sum())
        if not finished:
            continue
        episodes += finished
        if model.evaluate()["eval/return_mean"] == CLIFF_OPTIMUM:
            return episodes
        if episodes >= max_episodes:
            return None
    return None


@pytest.mark.parametrize("seed", [0, 1])
def test_planning_reaches_the_optimal_cliff_path_in_fewer_episodes(seed: int) -> None:
    with_planning = _episodes_to_optimum(50, seed, max_episodes=10)
    without_planning = _episodes_to_optimum(0, seed, max_episodes=200)
    assert with_planning is not None, "Dyna-Q with 50 planning steps did not find the optimal path"
    assert without_planning is not None, "plain Q-learning never found the optimal path"
    assert with_planning < without_planning, (with_planning, without_planning)


def test_cli_run_logs_metrics_by_frames_and_walks_the_optimal_path() -> None:
    cli = run_fit(*fit_args("cliffwalking_dynaq.yaml", "--model.total_frames", "1024",
                            "--model.eval_every_frames", "256", "--checkpoint.every_n_frames", "0"))
    client = MlflowClient(tracking_uri())
    run_id = cli.trainer.logger.run_id
    history = sorted(client.get_metric_history(run_id, "eval/return_mean"), key=lambda m: m.step)
    assert [m.step for m in history] == [256, 512, 768, 1024]
    assert history[-1].value == CLIFF_OPTIMUM, [m.value for m in history]
    for key in ("loss/td_error", "loss/planning_td_error", "train/epsilon", "train/model_coverage"):
        assert client.get_metric_history(run_id, key), key
    checkpoint = torch.load(cli.frame_checkpoint.last_path, weights_only=True)
    torch.testing.assert_close(checkpoint["state_dict"]["q_table"], cli.model.q_table)


def test_checkpoint_restores_tables_and_continues_identically(tmp_path: Path) -> None:
    seed_everything(3)
    model = _cliff_module(10, eps_init=1.0, eps_end=0.1, eps_anneal_frames=1_000, total_frames=320)
    batches = iter(model.train_dataloader())
    for _ in range(19):
        batch = next(batches)
        model.frames += batch.numel()
        model.update(batch)
    last_batch = next(batches)

    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "dyna.ckpt")
    model.update(last_batch)

    fresh = _cliff_module(10, eps_init=1.0, eps_end=0.1, eps_anneal_frames=1_000, total_frames=320)
    assert not fresh.model_seen.any()
    loaded = torch.load(tmp_path / "dyna.ckpt", weights_only=True)
    fresh.load_state_dict(loaded["state_dict"])
    fresh.on_load_checkpoint(loaded)
    assert fresh.frames == 304
    assert fresh.epsilon == pytest.approx(1.0 - 0.9 * 304 / 1_000, abs=1e-4)
    assert fresh.model_seen.sum() > 20
    # The restored RNG draws the same planning pairs, so the next update ends in the same tables.
    fresh.update(last_batch)
    for name in TABLES:
        torch.testing.assert_close(getattr(fresh, name), getattr(model, name), msg=name)


def _batch(steps: list[list[tuple[int, int, float, int, bool, bool]]]) -> TensorDict:
    """A collector-shaped batch [copies, time] of (state, action, reward, next_state, terminated, truncated)."""
    fields = torch.tensor([[list(map(float, step)) for step in copy] for copy in steps])
    state, action, reward, next_state, terminated, truncated = fields.unbind(-1)
    flags = {"terminated": terminated.bool().unsqueeze(-1), "truncated": truncated.bool().unsqueeze(-1)}
    return TensorDict({
        "observation": state.long(),
        "action": action.long(),
        "next": {"observation": next_state.long(), "reward": reward.unsqueeze(-1),
                 "done": flags["terminated"] | flags["truncated"], **flags},
    }, batch_size=state.shape)


def test_q_learning_stops_at_termination_bootstraps_at_truncation_in_time_order() -> None:
    model = _cliff_module(0, alpha=1.0, gamma=0.5)
    model.q_table[2] = 5.0
    model.q_table[21] = 3.0
    batch = _batch([
        [(10, 0, 0.0, 11, False, False), (1, 0, 1.0, 2, True, False)],
        [(0, 0, 0.0, 1, False, False), (20, 0, 0.0, 21, False, True)],
    ])
    model.update(batch)
    assert model.q_table[1, 0] == 1.0  # terminated: the reward alone, Q[2] ignored
    assert model.q_table[20, 0] == 0.5 * 3.0  # truncated by the time limit: bootstraps on gamma Q[21]
    # Copy 1 stepped 0 -> 1 before copy 0 learned the reward at 1, so Q[0, 0] must not see it yet.
    assert model.q_table[0, 0] == 0.0
    assert model.model_seen.sum() == 4
    assert model.model_next_state[1, 0] == 2 and model.model_reward[1, 0] == 1.0 and model.model_terminated[1, 0]


def test_policies_act_greedily_and_explore_in_the_env_action_encoding() -> None:
    model = _cliff_module(0, eps_init=1.0, eps_end=1.0)
    model.q_table[36] = torch.tensor([0.0, 2.0, -1.0, 2.0])  # a tie: the lowest index wins
    env = model.env.make(num_envs=4, seed=0)
    start = env.reset()
    assert (start["observation"] == 36).all()
    greedy = model.eval_policy(start.clone())["action"]
    assert greedy.tolist() == [1, 1, 1, 1]
    assert model.action_spec.expand(4).is_in(greedy)
    explored = torch.stack([model.exploration_policy(start.clone())["action"] for _ in range(50)])
    assert set(explored.flatten().tolist()) == {0, 1, 2, 3}


def test_continuous_states_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="finite set of states; CartPole-v1"):
        DynaQ(EnvFactory("CartPole-v1"), total_frames=10, frames_per_batch=1)


def test_state_and_action_encodings_round_trip() -> None:
    index = torch.tensor([[0, 3], [2, 1]])
    one_hot, integer = OneHot(4), Categorical(4)
    assert _from_index(index, one_hot).shape == (2, 2, 4)
    assert torch.equal(_to_index(_from_index(index, one_hot), one_hot), index)
    assert torch.equal(_to_index(_from_index(index, integer), integer), index)


@pytest.mark.parametrize("env_id", ["CliffWalking-v1", "Taxi-v4", "FrozenLake-v1"])
def test_toy_text_envs_pass_spec_checks_with_integer_states(env_id: str) -> None:
    env = EnvFactory(env_id, num_envs=4).make(seed=0)
    check_env_specs(env)
    num_states = env.observation_spec["observation"].space.n
    # Random actions across episode ends (and Taxi's 200-step limit) while other copies keep going.
    rollout = env.rollout(250, break_when_any_done=False)
    states = rollout["observation"]
    assert states.dtype == torch.int64 and states.shape == (4, 250)
    assert 0 <= states.min() and states.max() < num_states


def test_finished_frozenlake_episode_keeps_its_final_state_and_restarts() -> None:
    env = EnvFactory("FrozenLake-v1", num_envs=3).make(seed=1)
    rollout = env.rollout(100, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    copies, steps = done[:, :-1].nonzero().unbind(-1)
    assert copies.numel() > 5
    holes_and_goal = torch.tensor([5, 7, 11, 12, 15])
    assert torch.isin(rollout["next", "observation"][copies, steps], holes_and_goal).all()
    assert (rollout["observation"][copies, steps + 1] == 0).all()
