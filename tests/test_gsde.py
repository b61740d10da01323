"""gSDE for SAC: its log-probability, the held noise matrix, learning, exact resume and refused settings."""

from __future__ import annotations


import pytest
import torch
from conftest import CONF_DIR, fit_args, run_fit
from lightning.pytorch import seed_everything
from tensordict import TensorDict
from test_ddpg import _fit
from test_sac import _task_sac
from torchrl.data import Bounded
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import TanhNormal

from mbrl_lightning.algorithms.gsde import VARIANCE_FLOOR, GSDEHead, GSDENoise
from mbrl_lightning.cli import main
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets import MLP

SPEC = Bounded(low=-2.0, high=2.0, shape=(2,))


def _head(log_std_init: float = -1.0) -> GSDEHead:
    torch.manual_seed(0)
    head = GSDEHead(MLP(3, 2, hidden_sizes=(5,)), log_std_init)
    with torch.no_grad():  # entries of different sizes, so a transposed or summed-wrong sigma shows
        head.log_std.copy_(torch.linspace(-2.0, 0.5, 10).reshape(5, 2))
    return head


def test_the_log_probability_is_the_squashed_state_dependent_gaussian() -> None:
    head = _head()
    observation = torch.randn(4, 3)
    loc, scale, features = head(observation)
    # By hand: the features are the ReLU hidden layer, the variance sum_j (phi_j sigma_jk)^2.
    hidden = torch.relu(observation @ head.features[0].weight.T + head.features[0].bias)
    torch.testing.assert_close(features, hidden)
    sigma = head.log_std.exp()
    variance = torch.stack([sum((hidden[:, j] * sigma[j, k]) ** 2 for j in range(5)) for k in range(2)], -1)
    torch.testing.assert_close(scale, (variance + VARIANCE_FLOOR).sqrt())

    distribution = TanhNormal(loc, scale, low=SPEC.space.low, high=SPEC.space.high)
    action = distribution.sample()
    pre_tanh = torch.atanh(action / 2.0)
    by_hand = torch.distributions.Normal(loc, (variance + VARIANCE_FLOOR).sqrt()).log_prob(pre_tanh)
    # The box's change of variables: a = 2 tanh(u), da/du = 2 (1 - tanh(u)^2).
    by_hand = (by_hand - torch.log(2.0 * (1.0 - torch.tanh(pre_tanh) ** 2))).sum(-1)
    torch.testing.assert_close(distribution.log_prob(action), by_hand, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("learn_features", [True, False])
def test_the_noise_scale_trains_the_features_only_with_learn_features(learn_features: bool) -> None:
    torch.manual_seed(0)
    head = GSDEHead(MLP(3, 2, hidden_sizes=(5,)), -1.0, learn_features=learn_features)
    loc, scale, _ = head(torch.randn(8, 3))
    scale.sum().backward()  # the scale alone: what an entropy or log-probability term adds to the mean's gradient
    reached = head.features[0].weight.grad
    assert (reached is not None and reached.abs().sum() > 0) == learn_features
    assert head.log_std.grad.abs().sum() > 0


def test_the_held_matrix_noise_has_the_variance_the_losses_score() -> None:
    head = _head()
    noise = GSDENoise(head, SPEC, sample_freq=1, copies=1)
    observation = torch.randn(1, 3)
    loc, scale, features = (t.detach() for t in head(observation))
    draws = []
    for _ in range(4000):  # one fresh matrix per call: the distribution of phi(s) @ W over W
        with set_exploration_type(ExplorationType.RANDOM):
            td = noise(TensorDict(loc=loc, scale=scale, sde_features=features, batch_size=[1]))
        draws.append(torch.atanh(td["action"] / 2.0) - loc)
    empirical = torch.cat(draws).std(0)
    torch.testing.assert_close(empirical, scale[0], rtol=0.06, atol=1e-3)


def _actions(noise: GSDENoise, calls: int, starts: list[list[bool]] | None = None) -> torch.Tensor:
    torch.manual_seed(1)
    loc, features = torch.zeros(2, 2), torch.ones(2, 5)
    actions = []
    for call in range(calls):
        td = TensorDict(loc=loc, scale=torch.ones(2, 2), sde_features=features, batch_size=[2])
        if starts is not None:
            td["step_count"] = torch.tensor([[0 if start else 5] for start in starts[call]])
        with set_exploration_type(ExplorationType.RANDOM):  # as collection sets it
            actions.append(noise(td)["action"].clone())
    return torch.stack(actions)


def test_the_noise_is_held_between_resamples_and_changes_at_the_sample_frequency() -> None:
    actions = _actions(GSDENoise(_head(), SPEC, sample_freq=3, copies=2), 7)
    changed = [not torch.equal(actions[i], actions[i - 1]) for i in range(1, 7)]
    assert changed == [False, False, True, False, False, True]
    assert not torch.equal(actions[0, 0], actions[0, 1])  # each env copy has its own matrix

    # -1: held across env steps, redrawn by the once-per-batch call.
    once = GSDENoise(_head(), SPEC, sample_freq=-1, copies=2)
    before = _actions(once, 5)
    assert all(torch.equal(before[i], before[0]) for i in range(5))
    once.step(frames=10)
    assert not torch.equal(_actions(once, 1)[0], before[0])

    # An episode start redraws that copy's matrix only.
    starts = _actions(GSDENoise(_head(), SPEC, sample_freq=-1, copies=2), 3, [[False, False], [False, True], [False, False]])
    assert torch.equal(starts[1, 0], starts[0, 0]) and not torch.equal(starts[1, 1], starts[0, 1])
    assert torch.equal(starts[2], starts[1])

    # Outside collection (evaluation, a collector's probe call) the actor's action stays and nothing is counted.
    steps = int(once.steps)
    td = TensorDict(loc=torch.zeros(2, 2), scale=torch.ones(2, 2), sde_features=torch.ones(2, 5),
                    action=torch.full((2, 2), 0.5), batch_size=[2])
    assert torch.equal(once(td.clone())["action"], td["action"])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert torch.equal(once(td.clone())["action"], td["action"])
    assert int(once.steps) == steps


def test_sac_with_gsde_learns_a_small_continuous_task() -> None:
    seed_everything(0)
    model = _task_sac(
        env_copies=4, batch_size=64, learning_starts=200, frames_per_batch=40, total_frames=1200, eval_episodes=16,
        tau=0.01, alpha_lr=1e-3, use_sde=True, sde_sample_freq=4, log_std_init=-1.0,
    )
    assert model.fused_terms is not None  # the fused SAC step serves the gSDE actor too
    sigma = model.noise_scale
    before = model.evaluate()["eval/return_mean"]
    _fit(model)
    after = model.evaluate()["eval/return_mean"]
    assert model.noise_scale != sigma  # log sigma is learnt by the actor step
    # A random policy scores about -10, heading to the origin about -2.
    assert after > before + 3.0 and after > -4.0, (before, after)


# Pendulum SAC with gSDE, small: 64-frame batches, 4 gradient steps each, a matrix every 24 frames
# (so the counter, not the batch edge, decides the redraws across the checkpoint).
SMALL_GSDE = ("--model.use_sde", "true", "--model.sde_sample_freq", "24", "--model.frames_per_batch", "64",
              "--model.update_to_data", "null", "--model.updates_per_batch", "4", "--model.learning_starts", "64",
              "--model.batch_size", "32", "--model.actor_net.init_args.hidden_sizes", "[16]",
              "--model.critic_net.init_args.hidden_sizes", "[16]", "--model.eval_every_frames", "0",
              "--checkpoint.every_n_frames", "128", "--trainer.callbacks", "null")


def test_a_resumed_gsde_run_continues_exactly() -> None:
    full = run_fit(*fit_args("pendulum_sac.yaml", *SMALL_GSDE, "--model.total_frames", "256"))
    first = run_fit(*fit_args("pendulum_sac.yaml", *SMALL_GSDE, "--model.total_frames", "128"))
    resumed = run_fit(*fit_args("pendulum_sac.yaml", *SMALL_GSDE, "--model.total_frames", "256",
                                "--ckpt_path", str(first.frame_checkpoint.last_path)))
    assert int(resumed.model.exploration.steps) == int(full.model.exploration.steps) == 256
    expected = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_bad_gsde_settings_are_refused(capsys) -> None:
    with pytest.raises(ConfigurationError, match="model.sde_sample_freq"):
        _task_sac(use_sde=True, sde_sample_freq=0)
    code = main(["--config", str(CONF_DIR / "pendulum_sac.yaml"), "--model.use_sde", "true",
                 "--model.sde_sample_freq", "0"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "model.sde_sample_freq=0" in errors[0], errors
    code = main(["--config", str(CONF_DIR / "pendulum_sac.yaml"), "--model.use_sde", "true",
                 "--model.env.init_args.env_id", "CartPole-v1"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "needs continuous actions" in errors[0], errors
