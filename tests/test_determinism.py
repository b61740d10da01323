"""The same config and seed give identical returns and weights (CPU), for every algorithm family."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

FAMILIES = {
    "dqn": ("cartpole_dqn.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
            "--model.learning_starts", "128", "--model.total_frames", "512"),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
                        "--model.learning_starts", "128", "--model.model_learning.init_args.updates_per_batch", "4",
                        "--model.imagined.min_confidence", "0", "--model.total_frames", "512"),
    "ppo": ("cartpole_ppo.yaml", "--model.total_frames", "512", "--model.epochs", "2"),
    "mbppo": ("cartpole_mbppo.yaml", "--model.total_frames", "256", "--model.epochs", "2",
              "--model.imagination_iterations", "2", "--model.model_learning.init_args.updates_per_batch", "4"),
    "dyna_q": ("cliffwalking_dynaq.yaml", "--model.total_frames", "256"),
}


def _run(config: str, *overrides: str) -> tuple[dict, list[float]]:
    cli = run_fit(*fit_args(config, *overrides, "--model.eval_every_frames", "256", "--model.eval_episodes", "2",
                            "--seed_everything", "7"))
    history = MlflowClient(tracking_uri()).get_metric_history(cli.trainer.logger.run_id, "eval/return_mean")
    weights = {k: v.clone() for k, v in cli.model.state_dict().items()}
    return weights, [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_seed_same_returns_and_weights(family: str) -> None:
    first_weights, first_returns = _run(*FAMILIES[family])
    second_weights, second_returns = _run(*FAMILIES[family])
    assert first_returns == second_returns and first_returns
    assert first_weights.keys() == second_weights.keys()
    for name, value in first_weights.items():
        torch.testing.assert_close(second_weights[name], value, rtol=0, atol=0, msg=name)
