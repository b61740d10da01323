"""PPO and A2C learn CartPole on small budgets; actors fit discrete and continuous action spaces."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import Trainer
from mlflow.tracking import MlflowClient
from tensordict import TensorDict

from mbrl_lightning.algorithms.a2c import A2C
from mbrl_lightning.algorithms.ppo import PPO
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.tracking import tracking_uri


def _eval_returns(cli) -> list[float]:
    history = MlflowClient(tracking_uri()).get_metric_history(cli.trainer.logger.run_id, "eval/return_mean")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.parametrize(("config", "frames"), [("cartpole_ppo.yaml", "12288"), ("cartpole_a2c.yaml", "16384")])
def test_return_rises_well_above_random(config: str, frames: str) -> None:
    cli = run_fit(*fit_args(config, "--model.total_frames", frames, "--model.eval_every_frames", "4096",
                            "--seed_everything", "2"))
    returns = _eval_returns(cli)
    assert max(returns) > 100, returns  # a random policy scores about 22
    for key in ("loss/objective", "loss/critic"):
        assert MlflowClient(tracking_uri()).get_metric_history(cli.trainer.logger.run_id, key), key


def test_a2c_takes_one_full_batch_step_per_update() -> None:
    model = A2C(EnvFactory("CartPole-v1", num_envs=2), total_frames=48, frames_per_batch=16, eval_every_frames=0)
    minibatches: list[int] = []
    loss_terms = model.weighted_loss_terms

    def recorded(minibatch):
        minibatches.append(minibatch.numel())
        return loss_terms(minibatch)

    model.weighted_loss_terms = recorded
    Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(model)
    assert minibatches == [16, 16, 16]  # three batches, one gradient step on each whole batch


def test_continuous_actions_get_a_bounded_gaussian_policy() -> None:
    model = PPO(EnvFactory("Pendulum-v1", num_envs=2), total_frames=10, frames_per_batch=2)
    with torch.no_grad():
        out = model.actor(TensorDict({"observation": torch.randn(64, 3)}, [64]))
    assert out["action"].shape == (64, 1)
    assert out["action"].abs().max() <= 2.0  # Pendulum's torque limit
    assert torch.isfinite(out["action_log_prob"]).all()
