"""DQN with imagination through the CLI: the model learns, imagination feeds Q, diagnostics reach MLflow."""

from __future__ import annotations

import torch
from conftest import fit_args, run_fit
from mlflow.tracking import MlflowClient

from mbrl_lightning.algorithms.dqn_imagination import ImaginationDQN
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.tracking import tracking_uri

SMALL = ("--model.total_frames", "2048", "--model.updates_per_batch", "8", "--model.model_learning.init_args.updates_per_batch", "20",
         "--model.learning_starts", "512", "--model.eval_every_frames", "1024", "--model.eval_episodes", "2")


def _history(run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(MlflowClient(tracking_uri()).get_metric_history(run_id, key), key=lambda m: m.step)]


def test_fit_trains_the_model_imagines_and_logs_diagnostics() -> None:
    cli = run_fit(*fit_args("cartpole_dqn_imagination.yaml", *SMALL, "--model.imagined.min_confidence", "0"))
    run_id = cli.trainer.logger.run_id
    val_loss = _history(run_id, "world_model/val_loss")
    assert val_loss[-1] < val_loss[0] / 3, val_loss
    assert 0 < _history(run_id, "world_model/confidence")[-1] <= 1
    imagined = _history(run_id, "imagination/frames")
    assert imagined[-1] > imagined[0] > 0
    assert len(cli.model.imagined_buffer) > 0
    client = MlflowClient(tracking_uri())
    assert "world_model/k_step_error.png" in {a.path for a in client.list_artifacts(run_id, "world_model")}
    assert _history(run_id, "world_model/k_step_error_10")[-1] > _history(run_id, "world_model/k_step_error_1")[-1]


def test_confidence_gate_holds_imagination_back() -> None:
    cli = run_fit(*fit_args("cartpole_dqn_imagination.yaml", *SMALL, "--model.imagined.min_confidence", "1.0",
                            "--model.total_frames", "1024"))
    assert len(cli.model.imagined_buffer) == 0
    assert cli.model.imagined.frames == 0


def test_imagined_targets_use_the_model_prediction() -> None:
    torch.manual_seed(0)
    model = ImaginationDQN(EnvFactory("CartPole-v1", num_envs=4), imagined_targets=True,
                           imagined=ImaginedReplay(fraction=0.0), batch_size=16, total_frames=64, frames_per_batch=64)
    batch = EnvFactory("CartPole-v1", num_envs=4).make(seed=0).rollout(16, break_when_any_done=False)
    model.store(batch)
    sample = next(model.replay_batches(1))
    with torch.no_grad():
        expected = model.world_model.predict(sample["observation"], sample["action"]).next_observation[0]
    torch.testing.assert_close(sample["next", "observation"], expected)
