"""The distributional (C51) Atari agent: per-action return distributions, n-step targets, priorities, exact resume."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from tensordict import TensorDict
from torchrl.envs import ExplorationType, set_exploration_type
from test_atari_spr import SPR_TINY, _agent_state

from mbrl_lightning.algorithms.atari_dqn import AtariDQN
from mbrl_lightning.cli import main
from mbrl_lightning.nets import AtariQNet

# float32: the SPR resume test covers bf16, pacman.yaml's precision.
C51_TINY = (*SPR_TINY, "--model.atoms", "3", "--model.value_range", "[-2.0, 2.0]", "--trainer.precision", "32-true")


@pytest.mark.parametrize("dueling", [True, False])
def test_distributional_net_gives_one_float32_distribution_per_action(dueling: bool) -> None:
    torch.manual_seed(0)
    network = AtariQNet(4, 9, hidden_size=32, dueling=dueling, noisy=True, atoms=51)
    frames = torch.randint(0, 255, (5, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs = network(frames)
    assert log_probs.shape == (5, 51, 9) and log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-2), torch.ones(5, 9))


class FixedDistributions(torch.nn.Module):
    """Log-probabilities over 3 atoms that depend on the frames only: the newest frame's first pixel picks a row."""

    def __init__(self, rows: torch.Tensor, num_actions: int) -> None:
        super().__init__()
        self.rows = rows.log()
        self.num_actions = num_actions
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter, so the loss has one to differentiate

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        row = (frames[:, -1, 0, 0] > 0.5).long()  # 0: a current frame, 1: a next frame
        return (self.rows[row] + self.anchor)[..., None].expand(-1, -1, self.num_actions)


def test_c51_target_discounts_the_n_step_window_as_computed_by_hand() -> None:
    """Support (-2, 0, 2); next states put all mass on 2; current states predict (0.2, 0.3, 0.5).

    Reward 0.5 and gamma 0.5: after m = 2 steps the target return is 0.5 + 0.25 * 2 = 1, split
    evenly between atoms 0 and 2; after m = 1 it is 1.5, a quarter on 0 and three quarters on 2; at
    a terminal it is 0.5, three quarters on 0 and a quarter on 2. The loss is the cross-entropy.
    """
    cli = run_fit(*fit_args("pacman.yaml", *C51_TINY, "--model.gamma", "0.5", "--model.total_frames", "8",
                            "--model.learning_starts", "100"))
    model = cli.model
    rows = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]]).clamp_min(1e-12)
    model.q_actor.module[0].module = FixedDistributions(rows, model.num_actions)
    loss_module = model.make_loss(model.hparams.loss_function, model.hparams.double_dqn, model.hparams.gamma)
    frames = torch.zeros(3, 4, 8, 8)
    sample = TensorDict({
        "observation": frames, "action": torch.nn.functional.one_hot(torch.zeros(3, dtype=torch.long), model.num_actions),
        "steps_to_next_obs": torch.tensor([[2], [1], [1]]),
        "next": {"observation": frames + 1.0, "reward": torch.full((3, 1), 0.5),
                 "terminated": torch.tensor([[False], [False], [True]]),
                 "done": torch.tensor([[False], [False], [True]])},
    }, batch_size=[3])
    model.loss_module = loss_module
    AtariDQN.losses(model, sample)  # the C51 path: the keys it hands the loss, then td_error back on the sample
    log_current = torch.tensor([0.2, 0.3, 0.5]).log()
    targets = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.25, 0.75], [0.0, 0.75, 0.25]])
    expected = -(targets * log_current).sum(-1)
    torch.testing.assert_close(sample["td_error"].squeeze(-1), expected)
    assert expected[0] != pytest.approx(expected[1])  # the discount of the window matters


def test_expected_action_values_are_the_distributions_means() -> None:
    cli = run_fit(*fit_args("pacman.yaml", *C51_TINY, "--model.total_frames", "8", "--model.learning_starts", "100"))
    model = cli.model
    rows = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]]).clamp_min(1e-12)
    model.q_actor.module[0].module = FixedDistributions(rows, model.num_actions)
    frames = torch.zeros(2, 4, 8, 8)
    frames[1] += 1.0  # the second state picks the row with all mass on the return 2
    values = model.action_values(frames)
    torch.testing.assert_close(values, torch.tensor([[0.6], [2.0]]).expand(2, model.num_actions))


class ExpectedOnly(torch.nn.Module):
    """A custom Q-network that knows nothing of return distributions."""

    def __init__(self, channels: int, num_actions: int) -> None:
        super().__init__()
        self.head = torch.nn.LazyLinear(num_actions)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(frames.flatten(1).float())


def test_a_q_net_without_atoms_is_a_one_line_error_with_c51(capsys) -> None:
    q_net = f'{{"class_path": "{__name__}.ExpectedOnly"}}'
    code = main(list(fit_args("pacman.yaml", *C51_TINY, "--model.q_net", q_net)))
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert "model.atoms=3: needs a q_net that takes atoms=" in errors[0] and "ExpectedOnly" in errors[0], errors


def test_resumed_c51_run_continues_exactly_and_priorities_are_its_cross_entropies() -> None:
    straight_cli = run_fit(*fit_args("pacman.yaml", *C51_TINY, "--checkpoint.every_n_frames", "1000"))
    straight = _agent_state(straight_cli)
    assert type(straight_cli.model.loss_module).__name__ == "DistributionalDQNLoss"
    run_fit(*fit_args("pacman.yaml", *C51_TINY, "--model.total_frames", "16", "--checkpoint.every_n_frames", "16"))
    resumed_cli = run_fit(*fit_args("pacman.yaml", *C51_TINY, "--ckpt_path", "last", "--checkpoint.every_n_frames", "1000"))
    resumed = _agent_state(resumed_cli)
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    # One more step: the priorities of its samples become their cross-entropies, to the exponent 0.5.
    model = resumed_cli.model
    sample, _ = model.train_batch(model.replay_buffer.sample(model.batch_size))
    with set_exploration_type(ExplorationType.RANDOM):
        model.gradient_update(sample)
    priorities, index = model.replay_buffer.priorities, sample["index"]
    once = (index[:, None] == index[None, :]).sum(1) == 1  # slots drawn twice keep one of their two values
    assert once.sum() >= 2
    torch.testing.assert_close(priorities.priorities[index[once]].float(),
                               (sample["td_error"].squeeze(-1)[once] + priorities.eps) ** 0.5)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("atoms", "0", "model.atoms=0: must be 1 (expected Q-values) or at least 2"),
    ("value_range", "[1.0, -1.0]", "model.value_range=(1.0, -1.0): must be [lowest, highest] with lowest < highest"),
])
def test_bad_distribution_settings_are_one_line_errors(key: str, value: str, expected: str, capsys) -> None:
    code = main(list(fit_args("pacman.yaml", *SPR_TINY, f"--model.{key}", value)))
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors
