"""The data-efficient Atari agent: n-step targets, priorities, random shifts, the latent world model, exact resume."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fit_args, run_fit
from tensordict import TensorDict
from torch import nn
from torchrl.modules import NoisyLinear

from mbrl_lightning.data.nstep_frame_replay import NStepFrameReplay
from mbrl_lightning.data.priorities import ReplayPriorities
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets import AtariQNet
from mbrl_lightning.nets.conv import renormalize
from mbrl_lightning.nets.augment import random_intensity, random_shift, shift_frames
from mbrl_lightning.world_models.latent import LatentTransitionModel

FIXTURE = Path(__file__).parent / "fixtures" / "mspacman_random.npz"


def _batch(frames: torch.Tensor, next_frames: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
           action: torch.Tensor, step_count: torch.Tensor, num_actions: int, stack: int) -> TensorDict:
    """A ``[1, T]`` collector batch; only the newest frame of each stack matters to the replay."""
    steps = len(frames)
    done = done.reshape(steps, 1).bool()
    return TensorDict({
        "observation": frames[:, None].expand(steps, stack, *frames.shape[1:]),
        "step_count": step_count.reshape(steps, 1),
        "action": torch.nn.functional.one_hot(action, num_actions),
        "next": {"observation": next_frames[:, None].expand(steps, stack, *frames.shape[1:]),
                 "reward": reward.reshape(steps, 1).float(), "done": done, "terminated": done.clone(),
                 "truncated": torch.zeros_like(done)},
    }, batch_size=[steps]).unsqueeze(0)


def _numbered_replay(**kwargs) -> NStepFrameReplay:
    """Seven steps of one env copy: frame value = step, reward = step + 1, the episode ends at step 3."""
    steps = torch.arange(7)
    frames = steps[:, None, None].expand(7, 2, 2).to(torch.uint8)
    done = steps == 3
    count = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    replay = NStepFrameReplay(64, 1, 2, storage="memory", **kwargs)
    replay.extend(_batch(frames, frames + 1, (steps + 1).float(), done, steps % 2, count, 2, 2))
    return replay


def test_n_step_returns_match_hand_computed_values() -> None:
    replay = _numbered_replay(n_step=3, gamma=0.5)
    sample = replay.gather(torch.tensor([0, 2, 3, 5]), torch.zeros(4, dtype=torch.long))
    # t=0: 1 + .5*2 + .25*3; t=2: 3 + .5*4, the episode ends at 3; t=3: 4 alone; t=5: 6 + .5*7, the newest step.
    assert sample["next", "reward"].squeeze(-1).tolist() == [2.75, 5.0, 4.0, 9.5]
    assert sample["steps_to_next_obs"].squeeze(-1).tolist() == [3, 2, 1, 2]
    assert sample["next", "terminated"].squeeze(-1).tolist() == [False, True, True, False]
    # The next observation is the one after the window's last step: its newest frame is t + m.
    assert sample["next", "observation"][:, -1, 0, 0].tolist() == [3, 4, 4, 7]
    assert sample["observation"][:, -1, 0, 0].tolist() == [0, 2, 3, 5]


def test_k_step_sequences_stop_at_the_episode_end() -> None:
    replay = _numbered_replay(sequence_length=3)
    sample = replay.gather(torch.tensor([1, 2, 5]), torch.zeros(3, dtype=torch.long))
    # Observation t+k is the next observation of step t+k-1 (clamped to the newest stored step).
    assert sample["future_observation"][:, :, -1, 0, 0].tolist() == [[2, 3, 4], [3, 4, 5], [6, 7, 7]]
    assert sample["future_action"].argmax(-1).tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    # From step 2 the episode ends at step 3 (observation 4 is its last); from step 5, step 7 is not stored yet.
    assert sample["future_mask"].tolist() == [[True, True, True], [True, True, False], [True, True, False]]


def test_importance_weights_and_sampling_frequencies_follow_the_priorities() -> None:
    priorities = ReplayPriorities(4, alpha=0.5, beta=0.4, eps=0.0)
    priorities.update(torch.arange(4), torch.tensor([1.0, 4.0, 9.0, 16.0]))  # p = |delta| ** .5 = 1, 2, 3, 4
    torch.manual_seed(0)
    index, weight = priorities.sample(4, 20_000)
    frequencies = torch.bincount(index, minlength=4).float() / 20_000
    assert torch.allclose(frequencies, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)
    # w_i = (p_i / p_min) ** -beta: the largest weight (1) goes to the least likely slot.
    expected = torch.tensor([1.0, 2.0**-0.4, 3.0**-0.4, 4.0**-0.4])
    assert torch.allclose(weight, expected[index])
    priorities.mark_new(torch.tensor([0]))  # a new slot gets the largest priority seen: 16 -> p = 4
    assert priorities.priorities[0] == 4.0


def test_prioritized_replay_samples_carry_index_and_weight() -> None:
    replay = _numbered_replay(priority_exponent=1.0, importance_exponent=1.0)
    replay.update_priority(torch.arange(7), torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e3]))
    sample = replay.sample(256)
    assert (sample["index"] == 6).float().mean() > 0.9
    assert torch.allclose(sample["priority_weight"], torch.where(sample["index"] == 6, 1e-3, 1.0).float())


def test_random_shift_matches_hand_computed_crops() -> None:
    frame = torch.arange(1, 10, dtype=torch.uint8).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
    # Down by one row, left by one column: pixel (i, j) is input (i + 1, j - 1), clamped (replicate padding).
    assert shift_frames(frame, torch.tensor([[1, -1]]), pad=1)[0, 0].tolist() == [[4, 4, 5], [7, 7, 8], [7, 7, 8]]
    assert shift_frames(frame, torch.tensor([[-1, 1]]), pad=1)[0, 0].tolist() == [[2, 3, 3], [2, 3, 3], [5, 6, 6]]
    torch.manual_seed(0)
    stacks = torch.randint(0, 255, (16, 4, 12, 12), dtype=torch.uint8)
    shifted = random_shift(stacks, pad=2)
    for original, moved in zip(stacks, shifted):  # every output is one of the 25 shifts of its input
        candidates = [shift_frames(original[None], torch.tensor([[dy, dx]]), 2)[0] for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(torch.equal(moved, c) for c in candidates)


def test_random_intensity_scales_each_stack_by_spr_s_clamped_factor() -> None:
    frames = torch.full((64, 4, 3, 3), 0.5)
    torch.manual_seed(5)
    draws = torch.randn(64, 1, 1, 1)
    torch.manual_seed(5)
    scaled = random_intensity(frames.clone())
    # By hand: 1 + 0.05 * clamp(draw, -2, 2), one factor per stack, so between 0.9 and 1.1.
    expected = 0.5 * (1 + 0.05 * draws.clamp(-2, 2))
    torch.testing.assert_close(scaled, expected.expand_as(frames))
    assert (draws.abs() > 2).any(), "the check needs a draw that the clamp cuts"
    assert scaled.min() >= 0.45 - 1e-6 and scaled.max() <= 0.55 + 1e-6


def test_bad_replay_and_priority_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"model.n_step=0: must be a positive integer"):
        NStepFrameReplay(64, 1, 2, storage="memory", n_step=0)
    with pytest.raises(ConfigurationError, match=r"model.priority_exponent=1.5: must lie in \[0, 1\]"):
        NStepFrameReplay(64, 1, 2, storage="memory", priority_exponent=1.5)


def _recorded_replay(sequence_length: int) -> NStepFrameReplay:
    data = {k: torch.from_numpy(v) for k, v in np.load(FIXTURE).items()}
    replay = NStepFrameReplay(512, 1, 4, storage="memory", sequence_length=sequence_length)
    replay.extend(_batch(data["frames"], data["next_frames"], data["reward"], data["done"], data["action"],
                         data["step_count"], 9, 4))
    return replay


def test_latent_k_step_prediction_loss_falls_on_recorded_pacman_frames() -> None:
    torch.manual_seed(0)
    replay = _recorded_replay(sequence_length=3)
    network = AtariQNet(4, 9, hidden_size=32)
    model = LatentTransitionModel(64, 9, hidden_channels=32, projection_size=64, prediction_steps=3)
    model.bind(network, torch.zeros(1, 4, 84, 84, dtype=torch.uint8))
    optimizer = torch.optim.Adam([*network.parameters(), *model.parameters()], lr=1e-3)
    fixed = replay.sample(32)
    before = model.validate(fixed)["val_loss"].item()
    for _ in range(30):
        loss = model.loss(replay.sample(16))["loss_self_prediction"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.validate(fixed)["val_loss"].item()
    assert after < 0.5 * before, (before, after)


class _IdentityEncoder(nn.Module):
    """A stand-in encoder whose latent is the frame itself."""

    def feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float()


def test_latent_imagination_entropy_is_higher_where_predicted_latents_diverge() -> None:
    torch.manual_seed(0)
    model = LatentTransitionModel(1, 2, hidden_channels=1, projection_size=8)
    model.bind(_IdentityEncoder(), torch.zeros(1, 1, 4, 4))
    first, second = model.transition[0], model.transition[2]
    with torch.no_grad():
        for conv in (first, second):
            conv.weight.zero_()
            conv.bias.zero_()
        first.weight[0, 0, 1, 1] = 1.0  # the latent
        first.weight[0, 2, 1, 1] = 1.0  # action 1's plane
        first.bias.fill_(-1.0)  # relu(z - 1 + a1): action 0 predicts nothing, action 1 the latent
        second.weight[0, 0, 1, 1] = 1.0
    flat = torch.full((1, 1, 4, 4), -10.0)  # renormalised to 0: every action predicts the same latent
    varied = torch.arange(16.0).reshape(1, 1, 4, 4)  # action 0 predicts 0, action 1 the latent: they diverge
    entropy = model.imagination_entropy(torch.cat([flat, varied]))
    assert entropy[0] == 0.0 and entropy[1] > 0.05
    futures = model.imagine_all_actions(varied)
    assert futures.shape == (1, 2, 8) and not torch.allclose(futures[0, 0], futures[0, 1])


def test_renormalised_q_head_reads_the_latent_on_one_scale() -> None:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8)
    for renormalize in (True, False):
        network = AtariQNet(4, 9, hidden_size=32, renormalize=renormalize)
        before = network(frames)
        last = network.last_conv
        with torch.no_grad():  # ReLU is positively homogeneous: the torso's output triples
            last.weight.mul_(3.0)
            last.bias.mul_(3.0)
        after = network(frames)
        assert torch.allclose(before, after, atol=1e-5) == renormalize, renormalize


def test_self_prediction_targets_are_renormalised_as_the_predictions_are() -> None:
    torch.manual_seed(0)
    frames = torch.rand(3, 2, 4, 4)
    for renormalize_targets in (True, False):
        model = LatentTransitionModel(2, 2, hidden_channels=2, projection_size=8, renormalize_targets=renormalize_targets)
        model.bind(_IdentityEncoder(), torch.zeros(1, 2, 4, 4))
        target = model.target_embedding(frames)
        # The predictions are renormalised latents: a target of another scale is another point.
        assert torch.allclose(target, model.target_embedding(5.0 * frames - 2.0), atol=1e-5) == renormalize_targets
        expected = model.projection(renormalize(frames) if renormalize_targets else frames)
        assert torch.allclose(target, expected)


@pytest.mark.parametrize("projection", ["q_head", "linear"])
def test_a_q_head_projection_trains_the_q_head_s_first_layers_through_self_prediction(projection: str) -> None:
    torch.manual_seed(0)
    replay = _recorded_replay(sequence_length=2)
    network = AtariQNet(4, 9, hidden_size=32, noisy=True)
    network(torch.zeros(1, 4, 84, 84, dtype=torch.uint8))
    model = LatentTransitionModel(64, 9, hidden_channels=16, projection_size=24, prediction_steps=2, projection=projection)
    model.bind(network, torch.zeros(1, 4, 84, 84, dtype=torch.uint8))
    sample = replay.sample(8)
    model.loss(sample)["loss_self_prediction"].backward()
    firsts = [stream[0] for stream in network.head]  # the value and advantage streams' first layers
    reached = [layer.weight_mu.grad is not None and layer.weight_mu.grad.abs().sum() > 0 for layer in firsts]
    assert reached == [projection == "q_head"] * 2
    # Without noise: the projection reads the mean weights, whatever noise the layers hold.
    with torch.no_grad():
        latent = model.encode(sample["observation"])
        before = model.target_embedding(sample["observation"])
        network.reset_noise()
        assert torch.equal(before, model.target_embedding(sample["observation"]))
    assert model.embed(latent).shape[-1] == (64 if projection == "q_head" else 24)


def test_a_q_head_projection_needs_a_network_with_one() -> None:
    with pytest.raises(ConfigurationError, match=r"model.latent_model.projection='mlp': allowed values are 'linear', 'q_head'"):
        LatentTransitionModel(1, 2, projection="mlp")
    model = LatentTransitionModel(1, 2, hidden_channels=1, projection="q_head")
    with pytest.raises(ConfigurationError, match=r"model.latent_model.projection='q_head': needs a q_net with head_projection"):
        model.bind(_IdentityEncoder(), torch.zeros(1, 1, 4, 4))


# No evaluation: one at the split (the end of the first part) would be a difference between the runs.
SPR_TINY = ("--model.total_frames", "32", "--model.frames_per_batch", "8", "--model.updates_per_batch", "8",
            "--model.learning_starts", "8", "--model.buffer_size", "400", "--model.batch_size", "8",
            "--model.eval_every_frames", "0", "--model.eval_max_steps", "10",
            "--model.env.init_args.num_envs", "2", "--model.env.init_args.screen_size", "48",
            "--model.q_net.init_args.hidden_size", "32", "--model.latent_model.init_args.projection_size", "32",
            "--model.latent_model.init_args.hidden_channels", "16", "--model.latent_model.init_args.prediction_steps", "2",
            "--model.entropy_beta", "0.1", "--model.curiosity_beta", "0.1", "--seed_everything", "3",
            "--trainer.callbacks", "[]")


def _agent_state(cli) -> dict[str, torch.Tensor]:
    model = cli.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["priorities"] = model.replay_buffer.priorities.priorities.clone()
    return state


# bf16: pacman.yaml's precision; resets: one falls due at frame 16, where the first part ends, and
# the resumed part must not reset again.
RESETS = ("--model.reset_every_frames", "16", "--model.resets_until_frames", "32")
# SPR's network and targets (conf/atari100k.yaml's; benchmarks/atari100k.py --agents spr_network).
SPR_NETWORK = ("--model.q_net.init_args.renormalize", "true", "--model.latent_model.init_args.renormalize_targets", "true",
               "--model.latent_model.init_args.projection", "q_head", "--model.double_dqn", "true")


@pytest.mark.parametrize(("precision", "extra"),
                         [("32-true", ()), ("bf16-mixed", ()), ("32-true", RESETS), ("bf16-mixed", SPR_NETWORK)],
                         ids=["32-true", "bf16-mixed", "resets", "spr_network"])
def test_resumed_spr_run_continues_exactly(precision: str, extra: tuple[str, ...]) -> None:
    tiny = (*SPR_TINY, "--trainer.precision", precision, *extra)
    straight = _agent_state(run_fit(*fit_args("pacman.yaml", *tiny, "--checkpoint.every_n_frames", "1000")))
    run_fit(*fit_args("pacman.yaml", *tiny, "--model.total_frames", "16", "--checkpoint.every_n_frames", "16"))
    resumed_cli = run_fit(*fit_args("pacman.yaml", *tiny, "--ckpt_path", "last", "--checkpoint.every_n_frames", "1000"))
    resumed = _agent_state(resumed_cli)
    assert resumed_cli.model.frames == 32
    assert straight.keys() == resumed.keys()
    # Weights (encoder, heads and their noise, latent model), target network and priorities: all identical.
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.parametrize("atoms", ["1", "51"])
def test_noisy_layers_learn_their_noise_scales_through_the_td_loss(atoms: str) -> None:
    """TorchRL's losses run deterministic by default, which would leave every sigma at its initial value."""
    cli = run_fit(*fit_args("pacman.yaml", *SPR_TINY, "--model.total_frames", "16", "--model.atoms", atoms,
                            "--checkpoint.every_n_frames", "1000"))
    noisy = [m for m in cli.model.q_network.modules() if isinstance(m, NoisyLinear)]
    assert len(noisy) == 4  # both layers of both streams
    initial_mean = sum(m.std_init / m.in_features**0.5 * m.weight_sigma.numel() for m in noisy) / sum(
        m.weight_sigma.numel() for m in noisy)
    reported = cli.model.exploration_metrics()["train/noise_sigma"]
    assert reported != pytest.approx(initial_mean, rel=1e-6) and reported == pytest.approx(initial_mean, rel=0.2)
    for layer in noisy:
        initial = copy.deepcopy(layer)
        initial.reset_parameters()  # the sigmas start as constants (sigma_0 / sqrt(fan)), whatever the seed
        # Eight gradient steps must have moved every noise scale.
        assert not torch.equal(layer.weight_sigma, initial.weight_sigma)
        assert not torch.equal(layer.bias_sigma, initial.bias_sigma)



def test_the_target_network_draws_fresh_noise_at_every_step() -> None:
    """Its noise buffers are its own (target updates copy parameters only): left alone they keep their first draw."""
    def target_noise(frames: str) -> dict:
        cli = run_fit(*fit_args("pacman.yaml", *SPR_TINY, "--model.total_frames", frames, "--checkpoint.every_n_frames", "1000"))
        target = cli.model.loss_module.target_value_network_params
        return {key: target.get(key).clone() for key in target.keys(True, True) if key[-1].endswith("epsilon")}

    after_8_steps, after_16_steps = target_noise("16"), target_noise("24")
    assert len(after_8_steps) == 8
    for key, noise in after_8_steps.items():
        assert not torch.equal(noise, after_16_steps[key]), key


def test_uniform_warm_up_acts_at_random_and_starts_epsilon_decay_when_learning_starts() -> None:
    """Dopamine's schedule for DER, SPR and BBF: random actions until learning starts, then epsilon decays from 1."""
    warm = ("--model.warmup", "uniform", "--model.eps_init", "1.0", "--model.eps_end", "0.0",
            "--model.eps_anneal_frames", "16", "--model.total_frames", "16", "--checkpoint.every_n_frames", "1000")
    model = run_fit(*fit_args("pacman.yaml", *SPR_TINY, *warm)).model
    # Learning starts with the first batch (8 frames); only the second batch's 8 frames are annealed.
    assert model.epsilon == pytest.approx(0.5) and not bool(model.warmup_policy.warming_up)
    from_the_start = run_fit(*fit_args("pacman.yaml", *SPR_TINY, *warm[2:])).model
    assert from_the_start.epsilon == pytest.approx(0.0) and from_the_start.warmup_policy is None
    # With epsilon 0, the warm-up's actions are still uniform draws: the untrained noisy policy's are not.
    greedy = ("--model.warmup", "uniform", "--model.eps_init", "0.0", "--model.eps_end", "0.0",
              "--model.total_frames", "8", "--model.learning_starts", "100", "--checkpoint.every_n_frames", "1000")
    actions = run_fit(*fit_args("pacman.yaml", *SPR_TINY, *greedy)).model.replay_buffer.gather(
        torch.arange(4).repeat(2), torch.arange(2).repeat_interleave(4))["action"].argmax(-1)
    assert len(actions.unique()) >= 3


FAULT_PROBE = """
import ctypes, resource, sys
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "retain":
    from mbrl_lightning.allocator import retain_freed_memory
    assert retain_freed_memory()
sizes = [3 << 20, 7 << 20, 5 << 20, 9 << 20, 2 << 20]  # a step's worth of multi-megabyte tensors
def step():
    blocks = [libc.malloc(n) for n in sizes]
    for block, n in zip(blocks, sizes):
        libc.memset(block, 1, n)
    for block in reversed(blocks):
        libc.free(block)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10 / (sum(sizes) // 4096))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_retained_heap_takes_no_page_faults_for_repeated_large_blocks(subprocess_env) -> None:
    def faults_per_page(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", FAULT_PROBE, mode], env=subprocess_env, capture_output=True, text=True, check=True)
        return float(done.stdout)
    # By default glibc maps such blocks anew each time (a fault per page written); retained, they are reused.
    assert faults_per_page("default") > 0.5
    assert faults_per_page("retain") < 0.01
