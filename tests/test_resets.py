"""SR-SPR's resets: the schedule, shrink-and-perturb, fresh heads with fresh Adam moments, and the Atari agent's use of them."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF_DIR, fit_args, run_fit
from test_atari_spr import SPR_TINY
from torch import nn

from mbrl_lightning.algorithms.resets import ResetSchedule, reinitialise_, shrink_and_perturb_
from mbrl_lightning.cli import main
from mbrl_lightning.errors import ConfigurationError


def test_resets_fall_due_every_interval_while_a_whole_interval_is_left() -> None:
    schedule = ResetSchedule(every=20, until=100)
    due = [frames for frames in range(0, 121, 4) if schedule.due(frames)]
    # 100 would leave nothing before 100 to recover in (BBF's no_resets_after rule).
    assert due == [20, 40, 60, 80]
    resumed = ResetSchedule(every=20, until=100)
    resumed.load_state_dict(ResetSchedule(every=20, until=100).state_dict() | {"done": 2})
    assert [frames for frames in range(44, 121, 4) if resumed.due(frames)] == [60, 80]
    assert not any(ResetSchedule(every=0, until=100).due(frames) for frames in range(200))
    # A checkpoint written before resets were switched on: those that fell due by then count as done.
    late = ResetSchedule(every=20, until=100)
    late.state_missing({"frames": 44})
    assert [frames for frames in range(48, 121, 4) if late.due(frames)] == [60, 80]


def test_shrink_and_perturb_mixes_the_weights_with_a_fresh_draw() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    old = [p.detach().clone() for p in layer.parameters()]
    torch.manual_seed(1)
    fresh = nn.Linear(5, 3)  # the draw reset_parameters makes under the same seed
    torch.manual_seed(1)
    shrink_and_perturb_([layer], shrink=0.8, perturb=0.2)
    for mixed, kept, drawn in zip(layer.parameters(), old, fresh.parameters()):
        torch.testing.assert_close(mixed, 0.8 * kept + 0.2 * drawn)


def test_reinitialised_layers_lose_their_adam_moments_and_others_keep_theirs() -> None:
    torch.manual_seed(0)
    torso, head = nn.Linear(4, 4), nn.Linear(4, 2)
    optimizer = torch.optim.Adam([*torso.parameters(), *head.parameters()])
    head(torso(torch.randn(8, 4))).square().sum().backward()
    optimizer.step()
    before = head.weight.detach().clone()
    reinitialise_([head], optimizer)
    assert not torch.equal(head.weight, before)
    assert all(p not in optimizer.state for p in head.parameters())
    assert all(p in optimizer.state for p in torso.parameters())
    optimizer.step()  # a step after the reset starts the head's moments afresh
    assert int(optimizer.state[head.weight]["step"]) == 1 and int(optimizer.state[torso.weight]["step"]) == 2


def test_spr_reset_draws_fresh_heads_and_restarts_the_target_from_the_online_network() -> None:
    cli = run_fit(*fit_args("pacman.yaml", *SPR_TINY, "--model.total_frames", "16", "--model.double_dqn", "true",
                            "--model.target_tau", "0.5", "--checkpoint.every_n_frames", "1000"))
    model = cli.model
    optimizer = model.optimizer(0).optimizer
    head = [p for module in model.q_network.head for p in module.parameters()]
    encoder = list(model.q_network.features.parameters())
    heads_before = [p.detach().clone() for p in head]
    encoder_before = [p.detach().clone() for p in encoder]
    target = model.loss_module.target_value_network_params
    assert not all(torch.equal(t, o) for t, o in zip(target.values(True, True), model.loss_module.value_network_params.values(True, True)))
    model.reset_networks()
    assert all(not torch.equal(p, b) for p, b in zip(head, heads_before))
    assert all(p not in optimizer.state for p in head) and all(p in optimizer.state for p in encoder)
    # The encoder moved a fifth of the way to a fresh draw: changed, but still close to what it was.
    for p, b in zip(encoder, encoder_before):
        assert not torch.equal(p, b)
        if p.dim() > 1:  # a weight: 0.2 of the way to an independent draw of its own scale
            assert (p - b).norm() < 0.5 * b.norm()
    online = model.loss_module.value_network_params
    for key, value in online.items(True, True):
        if not key[-1].endswith("epsilon"):  # noise buffers are drawn, not learnt: target updates leave them
            assert torch.equal(target[key], value), key



def test_a_reset_draws_the_same_weights_whatever_the_global_random_state() -> None:
    """So DDP ranks, each seeded apart, reset to the same network."""
    model = run_fit(*fit_args("pacman.yaml", *SPR_TINY, "--model.total_frames", "16", "--checkpoint.every_n_frames", "1000")).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    draws = []
    for global_seed in (1, 2):
        model.load_state_dict(before)
        torch.manual_seed(global_seed)
        model.reset_networks()
        draws.append({k: v.clone() for k, v in model.state_dict().items()})
    changed = [k for k in before if not torch.equal(before[k], draws[0][k])]
    assert changed and all(torch.equal(draws[0][k], draws[1][k]) for k in before)


def test_bad_reset_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"model.reset_every_frames=-1: must be 0"):
        ResetSchedule(every=-1, until=100)
    with pytest.raises(ConfigurationError, match=r"model.resets_until_frames=-1: must be 0 or more"):
        ResetSchedule(every=10, until=-1)

@pytest.mark.parametrize(("override", "expected"), [
    (["--model.reset_shrink", "1.5"], "model.reset_shrink=1.5: must lie in [0, 1]."),
    (["--model.reset_every_frames", "-5"], "model.reset_every_frames=-5: must be 0 (no resets)"),
    (["--model.reset_every_frames", "1000"], "model.reset_every_frames=1000: must be 0 or more than model.learning_starts=2000"),
])
def test_bad_reset_keys_are_refused_with_one_line(override: list[str], expected: str, capsys) -> None:
    code = main(["--config", str(CONF_DIR / "pacman.yaml"), *override])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors
