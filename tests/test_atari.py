"""Atari preprocessing, the frame-stack replay buffer and the Pacman agents."""

from __future__ import annotations

from functools import partial

import pytest
from conftest import fit_args, run_fit
from mlflow.tracking import MlflowClient
import torch
from tensordict import TensorDict
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.algorithms import AtariDQN
from mbrl_lightning.algorithms.atari_dqn import DEFAULT_LEARNER
from mbrl_lightning.curiosity import action_spread, discrete_imagination_entropy
from mbrl_lightning.data import FrameStackReplay
from mbrl_lightning.envs import AtariEnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets import AtariQNet, last_conv_attention
from mbrl_lightning.nets.noisy import CachedNoisyLinear
from mbrl_lightning.tracking import tracking_uri
from mbrl_lightning.world_models import ConvWorldModel


@pytest.fixture(scope="module")
def pacman_rollout() -> torch.Tensor:
    """Random-policy MsPacman steps of 2 copies, with short episodes so that resets occur."""
    env = AtariEnvFactory("ALE/MsPacman-v5", num_envs=2, max_episode_steps=110).make(seed=3)
    rollout = env.rollout(240, break_when_any_done=False)
    env.close()
    return rollout


def test_preprocessing_shapes_dtypes_and_stack_order(pacman_rollout) -> None:
    observation = pacman_rollout["observation"]
    assert observation.shape == (2, 240, 4, 96, 96) and observation.dtype == torch.uint8
    assert pacman_rollout["action"].shape == (2, 240, 9)
    next_observation = pacman_rollout["next", "observation"]
    # Oldest frame first: the next stack is the current one shifted by one, plus a new frame.
    assert torch.equal(next_observation[:, :, :3], observation[:, :, 1:])
    # A reset stack repeats its first frame; the episode then fills it from the right.
    starts = pacman_rollout["step_count"].squeeze(-1) == 0
    first = observation[starts]
    assert torch.equal(first, first[:, :1].expand_as(first))
    done = pacman_rollout["next", "done"].squeeze(-1)
    assert done.sum() >= 4 and torch.equal(starts[:, 1:], done[:, :-1])
    assert observation.float().std() > 0  # real pixels, not a blank screen


def test_full_game_and_raw_scores(pacman_rollout) -> None:
    rewards = pacman_rollout["next", "reward"]
    assert rewards.max() >= 10  # MsPacman pellets are worth 10: no clipping in the env
    assert AtariEnvFactory("ALE/MsPacman-v5").episode_step_limit == 108_000 // 4


@pytest.mark.parametrize("capacity", [2 * 240, 2 * 57])
def test_frame_replay_rebuilds_the_stacks(pacman_rollout, capacity: int) -> None:
    replay = FrameStackReplay(capacity, num_envs=2, frame_stack=4, storage="memory")
    for chunk in pacman_rollout.split(24, dim=1):
        replay.extend(chunk)
    assert len(replay) == capacity
    kept = min(240, capacity // 2)
    steps = torch.arange(240 - kept + 3, 240).repeat(2)
    envs = torch.arange(2).repeat_interleave(steps.numel() // 2)
    rebuilt = replay.gather(steps, envs)
    original = pacman_rollout[envs, steps]
    assert torch.equal(rebuilt["observation"], original["observation"])
    assert torch.equal(rebuilt["next", "observation"], original["next", "observation"])
    assert torch.equal(rebuilt["action"], original["action"])
    assert torch.equal(rebuilt["next", "reward"], original["next", "reward"])
    assert replay.sample(16)["observation"].shape == (16, 4, 96, 96)
    # Two frames per transition, not two stacks of four.
    assert replay.frames.numel() + replay.next_frames.numel() == capacity // 2 * 2 * 2 * 96 * 96


def test_frame_replay_memmap_round_trip(pacman_rollout, tmp_path) -> None:
    replay = FrameStackReplay(200, num_envs=2, frame_stack=4, storage="memmap", scratch_dir=tmp_path)
    replay.extend(pacman_rollout[:, :60])
    copy = FrameStackReplay(200, num_envs=2, frame_stack=4, storage="memmap", scratch_dir=tmp_path)
    copy.load_state_dict(replay.state_dict())
    steps, envs = torch.arange(60), torch.zeros(60, dtype=torch.long)
    assert torch.equal(copy.gather(steps, envs)["observation"], replay.gather(steps, envs)["observation"])
    assert len(copy) == len(replay) == 120


def test_atari_factory_rejects_bad_options() -> None:
    with pytest.raises(ConfigurationError, match="env.frame_stack"):
        AtariEnvFactory("ALE/MsPacman-v5", frame_stack=0)
    with pytest.raises(ConfigurationError, match="env.env_id"):
        AtariEnvFactory("CartPole-v1")


def test_conv_world_model_error_falls_on_recorded_pacman_frames(pacman_rollout) -> None:
    torch.manual_seed(0)
    transitions = pacman_rollout.reshape(-1)[:256].select("observation", "action", ("next", "observation"))
    # Every second pixel of the recorded frames (48x48): a quarter of the convolution work.
    for key in ("observation", ("next", "observation")):
        transitions[key] = transitions[key][..., ::2, ::2].contiguous()
    model = ConvWorldModel(4, 9, channels=8, residual_blocks=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        before = model.errors(transitions).mean().item()
    for _ in range(40):
        batch = transitions[torch.randint(0, 256, (32,))]
        loss = model.loss(batch)["loss_observation"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = model.errors(transitions).mean().item()
    assert after < 0.5 * before, (before, after)


def test_imagination_entropy_is_the_spread_over_actions() -> None:
    frames = torch.rand(3, 2, 4, 4)

    def predict(observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        # Only action 1 changes the frames, by +1 everywhere.
        return observation + action[:, 1].float()[:, None, None, None]

    entropy = discrete_imagination_entropy(predict, frames, num_actions=3)
    expected = torch.tensor([0.0, 1.0, 0.0]).std()  # per element: two equal futures and one shifted by 1
    torch.testing.assert_close(entropy, expected.expand(3))
    constant = discrete_imagination_entropy(lambda o, a: o, frames, num_actions=3)
    torch.testing.assert_close(constant, torch.zeros(3))


def test_action_spread_is_the_standard_deviation_over_actions() -> None:
    predictions = torch.rand(5, 9, 4, 6, 6)
    expected = predictions.flatten(2).std(1).mean(-1)
    torch.testing.assert_close(action_spread(predictions), expected)


def test_world_model_imagines_all_actions_as_predict_does(pacman_rollout) -> None:
    torch.manual_seed(0)
    model = ConvWorldModel(4, 9, channels=8, residual_blocks=1)
    frames = pacman_rollout["observation"][0, 100:103]
    with torch.no_grad():
        every = model.predict_all_actions(frames)
        one_by_one = model.predict(frames.repeat_interleave(9, 0), torch.eye(9).repeat(3, 1)).reshape(3, 9, 4, 96, 96)
    assert every.shape == (3, 9, 4, 96, 96)
    torch.testing.assert_close(every, one_by_one)
    assert every[:, :, -1].std(1).mean() > 0  # the actions lead to different futures


def test_bonus_scores_entropy_and_the_fresh_model_error_in_one_pass(pacman_rollout) -> None:
    torch.manual_seed(0)
    env = AtariEnvFactory("ALE/MsPacman-v5", num_envs=2)
    world_model = partial(ConvWorldModel, channels=8, residual_blocks=1)
    agent = AtariDQN(env, model_learning=partial(DEFAULT_LEARNER, world_model=world_model), entropy_beta=0.1, eval_every_frames=0, buffer_size=200,
                     batch_size=16, frames_per_batch=16)
    transitions = pacman_rollout[:, 100:104].reshape(-1)
    bonus = agent.bonus(transitions)
    with torch.no_grad():
        entropy = discrete_imagination_entropy(agent.world_model.predict, transitions["observation"], 9)
        error = agent.world_model.errors(transitions).mean().item()
    assert bonus.shape == (8,) and (bonus > 0).all() and (bonus < 0.1).all()
    assert agent._bonus_metrics["imagination/entropy"] == pytest.approx(entropy.mean().item(), rel=1e-4)
    assert agent._fresh_error == pytest.approx(error, rel=1e-4)


def test_q_net_gives_the_same_values_in_either_memory_layout() -> None:
    torch.manual_seed(0)
    network = AtariQNet(4, 9)
    frames = torch.randint(0, 255, (3, 4, 96, 96), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(network(frames), network.network(frames.float() / 255.0))


@pytest.mark.parametrize("dueling", [True, False])
def test_q_values_keep_their_differences_between_states_under_bf16_autocast(dueling: bool) -> None:
    """With a common part of 5 (a trained agent's) the differences between states survive bf16-mixed."""
    torch.manual_seed(0)
    network = AtariQNet(4, 9, hidden_size=64, dueling=dueling, noisy=True)
    frames = torch.randint(0, 255, (16, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        network(frames)  # materialises the lazy head
        output = network.network.value[-1] if dueling else network.network[1][-1]
        output.bias_mu.add_(5.0)
        full = network(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = network(frames)
    assert mixed.dtype == torch.float32
    between_states = full - full.mean(0)
    # bf16's spacing at 5 is 0.03, far above these differences (about 1e-3): a bf16 output layer rounds them away.
    assert between_states.std() < 0.01
    assert (mixed - mixed.mean(0) - between_states).abs().max() < 0.2 * between_states.std()


def test_attention_map_follows_what_the_conv_layers_see() -> None:
    torch.manual_seed(0)
    network = AtariQNet(4, 9)
    with torch.no_grad():
        network(torch.zeros(1, 4, 96, 96, dtype=torch.uint8))
        for conv in [m for m in network.features.modules() if isinstance(m, torch.nn.Conv2d)]:
            conv.weight.abs_()  # positive filters: a response only where there are bright pixels
            conv.bias.zero_()
    frames = torch.zeros(2, 4, 96, 96, dtype=torch.uint8)
    frames[0, :, 8:28, 8:28] = 255  # top-left patch
    frames[1, :, 60:88, 60:88] = 255  # bottom-right patch
    maps = last_conv_attention(network, frames)
    assert maps.shape == (2, 96, 96) and maps.min() >= 0 and maps.max() <= 1
    peak = [divmod(int(m.argmax()), 96) for m in maps]
    assert peak[0][0] < 48 and peak[0][1] < 48
    assert peak[1][0] >= 48 and peak[1][1] >= 48


def test_noisy_dueling_head_resamples_noise() -> None:
    torch.manual_seed(0)
    network = AtariQNet(4, 9, noisy=True)
    frames = torch.randint(0, 255, (2, 4, 96, 96), dtype=torch.uint8)
    with set_exploration_type(ExplorationType.RANDOM):
        first = network(frames)
        network.reset_noise()
        second = network(frames)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        mean = network(frames)
        network.reset_noise()
        assert torch.equal(mean, network(frames))  # evaluation uses the mean weights
    assert first.shape == (2, 9) and not torch.allclose(first, second)



def test_kept_noisy_weights_match_torchrl_and_follow_every_change() -> None:
    from torchrl.modules import NoisyLinear

    torch.manual_seed(0)
    network = AtariQNet(4, 9, hidden_size=16, noisy=True)
    network(torch.zeros(1, 4, 84, 84, dtype=torch.uint8))
    layers = [m for m in network.modules() if isinstance(m, NoisyLinear)]
    assert layers and all(isinstance(m, CachedNoisyLinear) for m in layers)  # the lazy layers too, once sized
    layer = layers[0]
    reference = NoisyLinear(layer.in_features, layer.out_features)
    reference.load_state_dict(layer.state_dict())
    torch.manual_seed(1)
    layer.reset_noise()
    torch.manual_seed(1)
    reference.reset_noise()  # the same draws
    inputs = torch.randn(3, layer.in_features)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    with set_exploration_type(ExplorationType.RANDOM):
        with torch.no_grad():
            assert torch.equal(layer(inputs), reference(inputs))
            assert layer.weight is layer.weight  # kept between passes without gradient
        layer(inputs).sum().backward()
        optimizer.step()  # in place: the kept weight must not outlive it
        reference.load_state_dict(layer.state_dict())
        with torch.no_grad():
            assert torch.equal(layer(inputs), reference(inputs))
            # A target network: copied parameters swapped in (as TorchRL's losses do), then rewritten
            # through ``.data`` as a hard target update does, which no version counter sees.
            target = TensorDict.from_module(layer).clone()
            with target.to_module(layer):
                layer(inputs)
            target["weight_mu"].data.add_(1.0)
            layer.reset_noise()  # what every gradient step does before its passes
            reference.load_state_dict(dict(target.items()))
            with target.to_module(layer):
                assert torch.equal(layer(inputs), reference(inputs))

TINY = ("--model.total_frames", "64", "--model.frames_per_batch", "16", "--model.updates_per_batch", "1",
        "--model.learning_starts", "32", "--model.buffer_size", "400", "--model.model_learning.init_args.updates_per_batch", "1",
        "--model.eval_every_frames", "64", "--model.eval_episodes", "1", "--model.eval_max_steps", "10",
        "--model.env.init_args.num_envs", "2", "--checkpoint.every_n_frames", "32",
        # Small frames and model: the same code paths at a fraction of the convolution work.
        "--model.env.init_args.screen_size", "48", "--model.model_learning.init_args.world_model.init_args.channels", "4",
        "--trainer.callbacks", '[{"class_path": "mbrl_lightning.callbacks.AttentionGif", "init_args": {"max_steps": 8}}]')


def _metric_keys(run_id: str) -> set[str]:
    return set(MlflowClient(tracking_uri()).get_run(run_id).data.metrics)


def test_tiny_pacman_fit_logs_checkpoints_and_resumes() -> None:
    cli = run_fit(*fit_args("pacman_pixel_entropy.yaml", *TINY))
    run_id = cli.trainer.logger.run_id
    assert cli.model.frames == 64 and len(cli.model.replay_buffer) == 64
    keys = _metric_keys(run_id)
    for key in ("eval/return_mean", "loss/q", "loss/world_model_observation", "world_model/val_loss", "imagination/entropy",
                "train/env_frames", "train/emulator_frames"):
        assert key in keys, key
    client = MlflowClient(tracking_uri())
    assert [a.path for a in client.list_artifacts(run_id, "attention")] == ["attention/episode_64.gif"]
    emulator = client.get_metric_history(run_id, "train/emulator_frames")
    assert max(m.value for m in emulator) == 4 * 64

    resumed = run_fit(*fit_args("pacman_pixel_entropy.yaml", *TINY, "--model.total_frames", "96", "--ckpt_path", "last"))
    assert resumed.trainer.logger.run_id == run_id
    assert resumed.model.frames == 96 and len(resumed.model.replay_buffer) == 96
    assert resumed.model.replay_buffer.written == 48  # per env copy: the rings continued


def test_pacman_curiosity_twin_adds_its_bonus() -> None:
    cli = run_fit(*fit_args("pacman_curiosity.yaml", *TINY[:-2], "--model.total_frames", "48", "--trainer.callbacks", "[]"))
    keys = _metric_keys(cli.trainer.logger.run_id)
    assert "curiosity/intrinsic_reward" in keys and "imagination/entropy" not in keys
    sample = cli.model.replay_buffer.sample(64)
    assert (sample["next", "bonus"] > 0).any() and (sample["next", "bonus"] <= 0.1).all()
