"""DDPG and TD3: learning on a small continuous task, exploration noise, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from mbrl_lightning.algorithms import DDPG, TD3
from mbrl_lightning.algorithms.soft_update import ForeachSoftUpdate
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError

TASK_ID = "PointToOrigin-v0"


class PointToOrigin(gym.Env):
    """A point on a line moves by a quarter of the action per step; reward is minus its distance to 0.

    A random policy stays about half a unit away (return near -10 over 20 steps); heading to the
    origin earns about -2.
    """

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.position = np.zeros(1, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, size=1).astype(np.float32)
        return self.position.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.position = np.clip(self.position + 0.25 * np.asarray(action, dtype=np.float32), -1.0, 1.0)
        return self.position.copy(), -float(abs(self.position[0])), False, False, {}


if TASK_ID not in gym.registry:
    gym.register(TASK_ID, entry_point=PointToOrigin, max_episode_steps=20)


def _task_model(cls: type, **overrides) -> DDPG:
    settings = dict(
        actor_lr=1e-3, critic_lr=1e-3, tau=0.01, gamma=0.9, batch_size=64, learning_starts=200,
        frames_per_batch=40, updates_per_batch=20, noise_init=0.5, noise_end=0.1, noise_anneal_frames=1000,
        total_frames=1200, eval_every_frames=0, eval_episodes=16,
    )
    settings.update(overrides)
    return cls(EnvFactory(TASK_ID, num_envs=4), **settings)


def _fit(model: DDPG) -> None:
    trainer = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model)


@pytest.mark.parametrize("cls", [DDPG, TD3], ids=["ddpg", "td3"])
def test_return_rises_on_a_small_continuous_task(cls: type) -> None:
    seed_everything(0)
    model = _task_model(cls)
    before = model.evaluate()["eval/return_mean"]
    _fit(model)
    after = model.evaluate()["eval/return_mean"]
    assert model.frames == 1200
    assert after > before + 3.0, (before, after)
    assert after > -4.0, after


def test_gaussian_noise_anneals_by_frames() -> None:
    seed_everything(0)
    model = _task_model(DDPG, total_frames=400, learning_starts=400, noise_anneal_frames=400)
    assert model.noise_scale == pytest.approx(0.5)
    _fit(model)
    assert model.noise_scale == pytest.approx(0.1, abs=1e-4)


def test_ou_noise_is_correlated_in_time_and_restarts_with_episodes() -> None:
    seed_everything(0)
    model = _task_model(DDPG, exploration="ou", noise_init=1.0, noise_end=1.0, ou_sigma=1.0, ou_theta=0.15,
                        warmup="policy")  # the noise itself, not the uniform warm-up
    env = model.env.make(num_envs=1, seed=0)
    assert "is_init" in env.observation_spec.keys()
    with torch.no_grad():
        rollout = env.rollout(40, policy=model.exploration_policy, break_when_any_done=False)
    noise = (rollout["action"] - model.actor(rollout.clone())["action"]).squeeze(-1)
    # Successive OU perturbations are strongly correlated; independent noise would give about 0.
    first = noise[0, :19]
    assert torch.corrcoef(torch.stack([first[:-1], first[1:]]))[0, 1] > 0.5
    # The process restarts at the first step of the second episode.
    assert rollout["is_init"][0, 20].item()


def test_discrete_actions_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="continuous actions"):
        DDPG(EnvFactory("CartPole-v1"))


def test_imagination_ddpg_fits_and_logs_the_contract_metrics() -> None:
    from functools import partial

    from mbrl_lightning.algorithms import ImaginationDDPG
    from mbrl_lightning.algorithms.ddpg_imagination import DEFAULT_LEARNER
    from mbrl_lightning.curiosity import ImaginationEntropy

    seed_everything(0)
    model = _task_model(
        ImaginationDDPG, total_frames=400, updates_per_batch=4, model_learning=partial(DEFAULT_LEARNER, updates_per_batch=4),
        imagination=partial(ImaginationEntropy, rollouts=4, horizon=2, curiosity_beta=1.0),
    )
    logged: dict[str, float] = {}
    model.log_frames = lambda metrics: logged.update(metrics)
    _fit(model)
    for key in ("imagination/entropy", "imagination/rollouts", "curiosity/entropy_reward",
                "curiosity/forward_error_reward", "curiosity/intrinsic_reward", "world_model/val_loss",
                "world_model/train_loss", "loss/actor", "loss/critic"):
        assert key in logged, key
    assert logged["imagination/entropy"] > 0
    assert 0 < logged["curiosity/intrinsic_reward"] < 2  # two tanh-squashed terms
    assert logged["imagination/rollouts"] == 64 * 4


def test_fused_target_update_matches_torchrl_soft_update() -> None:
    from torchrl.objectives import SoftUpdate

    tau = 0.05
    models = []
    for _ in range(2):
        seed_everything(0)
        models.append(_task_model(DDPG, tau=tau))
    fused, plain = models
    reference = SoftUpdate(plain.loss_module, tau=tau)
    before = [t.clone() for t in fused.target_updater._current()[1]]
    for model in models:  # move the trained networks away from their targets, identically
        with torch.no_grad():
            for index, param in enumerate(model.loss_module.parameters()):
                param.add_(0.1 * (index + 1))
    fused.target_updater.step()
    reference.step()
    sources, targets = fused.target_updater._current()
    _, reference_targets = ForeachSoftUpdate._lookup(reference)
    assert len(targets) == len(reference_targets) == 12  # weights and biases of 3 actor and 3 critic layers
    for old, source, target, expected in zip(before, sources, targets, reference_targets, strict=True):
        torch.testing.assert_close(target, expected)
        torch.testing.assert_close(target, old + tau * (source.detach() - old))
        assert not torch.equal(target, old)


def test_td3_moves_its_targets_only_with_the_actor() -> None:
    seed_everything(0)
    model = _task_model(TD3, learning_starts=40, total_frames=40, updates_per_batch=3)
    targets = model.target_updater._current()[1]
    moves = []
    original_step = model.target_updater.step

    def counting_step() -> None:
        moves.append(model.gradient_steps)
        original_step()

    model.target_updater.step = counting_step
    before = [t.clone() for t in targets]
    _fit(model)
    assert model.gradient_steps == 3
    assert moves == [0, 2]  # actor steps 0 and 2 of three critic steps (policy delay 2)
    assert all(not torch.equal(old, new) for old, new in zip(before, targets, strict=True))
