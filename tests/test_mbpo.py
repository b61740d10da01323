"""MBPO: rollout schedule, termination, model-buffer retention, batch mix, early stopping, learning, resume."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, fit_args, run_fit
from lightning.pytorch import seed_everything
from tensordict import TensorDict
from test_ddpg import TASK_ID, _fit

from mbrl_lightning.algorithms.mbpo import MBPO
from mbrl_lightning.cli import main
from mbrl_lightning.data import make_replay_buffer
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.nets import MLP
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, WorldModelLearner
from mbrl_lightning.world_models.base import RawOutput, WorldModel
from mbrl_lightning.world_models.early_stopping import MemberSnapshots


class Falling(WorldModel):
    """Every step lowers observation[0] by 0.2, and never predicts termination."""

    def raw_output(self, inputs: torch.Tensor, members: torch.Tensor | None = None) -> RawOutput:
        mean = torch.zeros(1, inputs.shape[-2], self.target_size)
        mean[..., 0] = -0.2
        return RawOutput(mean=mean, done_logit=torch.full((1, inputs.shape[-2], 1), -10.0))

    def loss(self, transitions):
        raise NotImplementedError("never trained")


def _transitions(n: int, observation_size: int, action_size: int, reward: float = 0.0, marker: float = 0.0) -> TensorDict:
    observation = torch.zeros(n, observation_size)
    observation[:, 1] = marker
    flag = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict({
        "observation": observation, "action": torch.zeros(n, action_size),
        "next": {"observation": observation.clone(), "reward": torch.full((n, 1), reward), "done": flag,
                 "terminated": flag, "truncated": flag},
    }, batch_size=[n])


def _still(action_size: int):
    return lambda td: td.set("action", torch.zeros(td.shape[0], action_size))


def _rollout(imagined: ImaginedReplay, observation_size: int, action_size: int, real_frames: int = 0,
             marker: float = 0.0) -> dict[str, float]:
    real = make_replay_buffer(64)
    real.extend(_transitions(16, observation_size, action_size, marker=marker))
    return imagined.imagine(Falling(observation_size, action_size), _still(action_size), real, torch.device("cpu"),
                            1.0, real_frames)


def test_rollout_length_and_model_buffer_follow_the_schedule() -> None:
    imagined = ImaginedReplay(starts=4, rollout_schedule=[100, 300, 1, 5], retain_rollouts=2, termination="never")
    imagined.bind_env(EnvFactory("Pendulum-v1"))
    assert [imagined.horizon_at(frames) for frames in (0, 100, 200, 299, 300, 10_000)] == [1, 1, 3, 4, 5, 5]
    sizes = []
    for call, frames in enumerate((0, 200, 300, 400)):
        metrics = _rollout(imagined, 3, 1, frames, marker=call)
        sizes.append((metrics["imagination/rollout_length"], imagined.buffer.storage.max_size, len(imagined.buffer)))
    # Capacity is retain_rollouts * starts * horizon; the buffer keeps what it held when it grows.
    assert sizes == [(1, 8, 4), (3, 24, 16), (5, 40, 36), (5, 40, 40)]
    # The newest 40 imagined transitions are the last two rollouts of 20 each.
    assert set(imagined.buffer[:]["observation"][:, 1].tolist()) == {2.0, 3.0}
    imagined.resize(10)  # shrinking keeps the newest transitions
    assert len(imagined.buffer) == 10 and set(imagined.buffer[:]["observation"][:, 1].tolist()) == {3.0}


def test_the_termination_function_stops_rollouts() -> None:
    ant = EnvFactory("AntBulletEnv-v0")
    lengths = {}
    for termination in ("auto", "learned"):
        imagined = ImaginedReplay(starts=8, horizon=5, termination=termination)
        imagined.bind_env(ant)
        lengths[termination] = _rollout(imagined, 28, 8)["imagination/mean_length"]
    # The torso starts 0.75 high and falls 0.2 a step: the third step ends at 0.15 <= 0.26, Ant's end.
    assert lengths == {"auto": 3.0, "learned": 5.0}
    with pytest.raises(ConfigurationError, match=r"model.imagined.termination='auto': no termination function is known "
                                                 r"for PointToOrigin-v0; set 'learned'"):
        ImaginedReplay(termination="auto").bind_env(EnvFactory(TASK_ID))


@pytest.mark.parametrize("real_ratio", [0.05, 0.5, 0.0, 1.0])
def test_the_batch_mix_matches_the_real_ratio(real_ratio: float) -> None:
    imagined = ImaginedReplay(real_ratio=real_ratio, buffer_size=100)
    imagined.buffer.extend(_transitions(50, 2, 1, reward=-1.0))
    real = make_replay_buffer(100)
    real.extend(_transitions(50, 2, 1, reward=1.0))
    batches = list(imagined.mixed_batches(real, 3, 256, torch.device("cpu")))
    assert len(batches) == 3
    for batch in batches:
        assert batch.shape == (256,) and int((batch["next", "reward"] > 0).sum()) == int(256 * real_ratio)


def test_early_stopping_keeps_each_members_best_weights_and_stops() -> None:
    ensemble = GaussianEnsembleWorldModel(2, 1, num_members=3, num_elites=2, hidden_sizes=(8,))
    snapshots = MemberSnapshots(ensemble, min_improvement=0.01)
    first = [parameter.detach().clone() for parameter in snapshots.parameters]
    assert snapshots.offer(torch.tensor([1.0, 1.0, 1.0]))
    with torch.no_grad():
        for parameter in snapshots.parameters:
            parameter.add_(1.0)
    # Member 1 improved by 50%, member 0 by 0.5% (too little), member 2 got worse.
    assert snapshots.offer(torch.tensor([0.995, 0.5, 2.0]))
    assert not snapshots.offer(torch.tensor([0.999, 0.6, 0.99]))
    snapshots.restore()
    for before, parameter in zip(first, snapshots.parameters):
        torch.testing.assert_close(parameter[0], before[0])
        torch.testing.assert_close(parameter[1], before[1] + 1.0)
        torch.testing.assert_close(parameter[2], before[2])

    def epochs(patience: int, max_epochs: int | None) -> float:
        torch.manual_seed(0)
        learner = WorldModelLearner(2, 1, world_model=partial(GaussianEnsembleWorldModel, num_members=3, num_elites=2,
                                                              hidden_sizes=(8,)),
                                    lr=0.01, batch_size=64, validation_fraction=0.3, early_stopping_patience=patience,
                                    max_epochs=max_epochs, k_step_horizon=0)
        data = _transitions(300, 2, 1)
        data["observation"] = torch.randn(300, 2)
        # Noisy targets: the held-out error levels off at the noise, after a few dozen epochs.
        data["next", "observation"] = data["observation"] * 0.9 + 0.3 * torch.randn(300, 2)
        learner.store(data)
        optimizer = learner.make_optimizer()

        def step(loss: torch.Tensor) -> None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return learner.train(step)["world_model/epochs"]

    assert epochs(patience=0, max_epochs=None) < epochs(patience=5, max_epochs=None) < 1000
    assert epochs(patience=1000, max_epochs=7) == 7


def _task_mbpo(**overrides) -> MBPO:
    small = partial(MLP, hidden_sizes=(64, 64))
    settings = dict(
        model_learning=partial(WorldModelLearner, world_model=partial(GaussianEnsembleWorldModel, num_members=3,
                                                                      num_elites=2, hidden_sizes=(32, 32)),
                               batch_size=64, validation_fraction=0.2, early_stopping_patience=2, max_epochs=20,
                               k_step_horizon=0),
        imagined=ImaginedReplay(starts=400, rollout_schedule=[200, 600, 1, 3], retain_rollouts=2,
                                termination="never", real_ratio=0.25),
        model_train_every_frames=120, actor_net=small, critic_net=small, actor_lr=1e-3, critic_lr=1e-3,
        alpha_lr=1e-3, tau=0.01, gamma=0.9, batch_size=64, learning_starts=200, frames_per_batch=40,
        update_to_data=0.5, total_frames=1200, eval_every_frames=0, eval_episodes=16,
    )
    settings.update(overrides)
    return MBPO(EnvFactory(TASK_ID, num_envs=4), **settings)


def test_mbpo_retrains_on_schedule_mixes_batches_and_learns() -> None:
    seed_everything(0)
    model = _task_mbpo()
    samples, trainings = [], []
    update, learn = model.gradient_update, model.learn_model
    model.gradient_update = lambda sample: (samples.append(sample), update(sample))[1]
    model.learn_model = lambda batch: (trainings.append((model.frames, model.imagined.horizon_at(model.frames))),
                                       learn(batch))[1]
    before = model.evaluate()["eval/return_mean"]
    _fit(model)
    after = model.evaluate()["eval/return_mean"]
    # First after the 200-frame warm-up, then on every batch that crosses a multiple of 120 frames.
    assert trainings == [(200, 1), (240, 1), (360, 1), (480, 2), (600, 3), (720, 3), (840, 3), (960, 3), (1080, 3),
                         (1200, 3)]
    # 0.5 gradient steps per frame after the warm-up; each batch is 16 real and 48 imagined transitions.
    assert len(samples) == model.gradient_steps == (1200 - 160) // 2
    real = model.replay_buffer[:]
    real_rewards = set(real["next", "reward"].flatten().tolist())
    last = samples[-1]["next", "reward"].flatten().tolist()
    assert sum(reward in real_rewards for reward in last) == 16
    assert len(model.imagined.buffer) == 2 * 400 * 3
    assert model.model_learner.world_model.elite_indices.numel() == 2
    assert after > before + 3.0, (before, after)
    assert after > -4.0, after


SMALL_PENDULUM = (
    "--model.frames_per_batch", "50", "--model.learning_starts", "100", "--model.update_to_data", "0.2",
    "--model.model_train_every_frames", "100", "--model.imagined.starts", "200", "--model.imagined.rollout_schedule",
    "[100, 200, 1, 2]", "--model.imagined.retain_rollouts", "2", "--model.model_learning.init_args.max_epochs", "2",
    "--model.model_learning.init_args.world_model.init_args.hidden_sizes", "[16]",
    "--model.actor_net.init_args.hidden_sizes", "[32]", "--model.critic_net.init_args.hidden_sizes", "[32]",
    "--model.eval_every_frames", "0", "--checkpoint.every_n_frames", "100", "--seed_everything", "3",
)


def test_a_resumed_mbpo_run_continues_exactly() -> None:
    whole = run_fit(*fit_args("pendulum_mbpo.yaml", *SMALL_PENDULUM, "--model.total_frames", "500",
                              "--experiment_name", "whole"))
    half = run_fit(*fit_args("pendulum_mbpo.yaml", *SMALL_PENDULUM, "--model.total_frames", "300",
                             "--experiment_name", "halves"))
    # Cut where the model buffer has grown past its first capacity and wrapped around.
    assert half.model.imagined.last_horizon == 2 and half.model.model_trained_at == 300
    assert len(half.model.imagined.buffer) == half.model.imagined.buffer.storage.max_size == 2 * 200 * 2
    assert half.model.imagined.frames > 2 * 200 * 2
    resumed = run_fit(*fit_args("pendulum_mbpo.yaml", *SMALL_PENDULUM, "--model.total_frames", "500",
                                "--experiment_name", "halves", "--ckpt_path", str(half.frame_checkpoint.last_path)))
    expected, got = whole.model, resumed.model
    assert got.model_trained_at == expected.model_trained_at == 500
    assert got.imagined.state_dict() == expected.imagined.state_dict()
    for name, value in got.state_dict().items():  # SAC, ensemble (elites, normalisers included)
        torch.testing.assert_close(value, expected.state_dict()[name], rtol=0, atol=0, msg=name)
    for buffer in ("imagined", "replay"):
        torch.testing.assert_close(got.checkpointed_buffers()[buffer][:], expected.checkpointed_buffers()[buffer][:],
                                   rtol=0, atol=0)
    torch.testing.assert_close(got.model_learner.validation_buffer[:], expected.model_learner.validation_buffer[:],
                               rtol=0, atol=0)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model.imagined.real_ratio", "1.5"], "model.imagined.real_ratio=1.5: must lie in [0, 1]"),
        (["--model.imagined.horizon", "0"], "model.imagined.horizon=0: must be a positive integer"),
        (["--model.imagined.rollout_schedule", "[0, 10, 0, 5]"], "model.imagined.rollout_schedule=[0, 10, 0, 5]: must be"),
        (["--model.update_to_data", "0"], "model.update_to_data=0"),
        (["--model.model_train_every_frames", "0"], "model.model_train_every_frames=0: must be a positive integer"),
        (["--model.env.init_args.env_id", "MountainCarContinuous-v0"],
         "model.imagined.termination='auto': no termination function is known for MountainCarContinuous-v0"),
    ],
)
def test_bad_mbpo_input_is_refused_with_one_line(override: list[str], expected: str, capsys) -> None:
    code = main(["--config", str(CONF_DIR / "pendulum_mbpo.yaml"), *override])
    stderr = capsys.readouterr().err
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], stderr
    assert not Path("checkpoints").exists()
