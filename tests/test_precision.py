"""bf16 mixed precision on the CPU: every algorithm family trains under autocast and stays finite."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import Callback
from mlflow.tracking import MlflowClient

from mbrl_lightning.nets.ensemble import EnsembleLinear
from mbrl_lightning.tracking import tracking_uri

FAMILIES = {
    "dqn": ("cartpole_dqn.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
            "--model.learning_starts", "128", "--model.total_frames", "384"),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
                        "--model.learning_starts", "128", "--model.model_learning.init_args.updates_per_batch", "4",
                        "--model.imagined.min_confidence", "0", "--model.total_frames", "384"),
    "ppo": ("cartpole_ppo.yaml", "--model.total_frames", "256", "--model.epochs", "2"),
    "a2c": ("cartpole_a2c.yaml", "--model.total_frames", "256"),
    "mbppo": ("cartpole_mbppo.yaml", "--model.total_frames", "256", "--model.epochs", "2",
              "--model.imagination_iterations", "2", "--model.model_learning.init_args.updates_per_batch", "4"),
    "dyna_q": ("cliffwalking_dynaq.yaml", "--model.total_frames", "256"),
    "ddpg": ("pendulum_ddpg.yaml", "--model.total_frames", "384", "--model.learning_starts", "256"),
    "pets": ("pendulum_pets.yaml", "--model.total_frames", "400", "--model.planner.init_args.population", "20",
             "--model.planner.init_args.elites", "4", "--model.planner.init_args.iterations", "1",
             "--model.model_learning.init_args.updates_per_batch", "5"),
    "mcts": ("cartpole_mcts.yaml", "--model.total_frames", "500", "--model.planner.init_args.num_simulations", "4",
             "--model.model_learning.init_args.updates_per_batch", "5", "--model.value_updates_per_batch", "5",
             "--model.value_batch_size", "32"),
}


class LinearOutputDtypes(Callback):
    """Records the dtype of every (ensemble) linear layer's output (autocast shows as bfloat16).

    Outputs computed inside the module's periodic evaluation (planning included) go to ``eval_dtypes``.
    """

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.eval_dtypes: set[torch.dtype] = set()
        self._evaluating = False

    def on_train_start(self, trainer, pl_module) -> None:
        for module in pl_module.modules():
            if isinstance(module, (torch.nn.Linear, EnsembleLinear)):
                module.register_forward_hook(self._record)
        evaluate = pl_module.evaluate

        def flagged_evaluate():
            self._evaluating = True
            try:
                return evaluate()
            finally:
                self._evaluating = False

        pl_module.evaluate = flagged_evaluate

    def _record(self, _module, _inputs, output: torch.Tensor) -> None:
        (self.eval_dtypes if self._evaluating else self.dtypes).add(output.dtype)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bf16_mixed_fit_runs_and_stays_finite(family: str) -> None:
    config, *overrides = FAMILIES[family]
    probe = LinearOutputDtypes()
    cli = run_fit(*fit_args(config, *overrides, "--trainer.precision", "bf16-mixed", "--model.eval_every_frames",
                            "256", "--model.eval_episodes", "2", "--seed_everything", "1"), callbacks=(probe,))
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.frames >= cli.model.total_frames
    # Weights stay float32 (autocast computes in bf16, the optimizer updates full-precision weights).
    for name, value in cli.model.named_parameters():
        assert value.dtype == torch.float32, name
    for name, value in cli.model.state_dict().items():
        if value.is_floating_point():
            assert value.dtype != torch.bfloat16, name
            assert torch.isfinite(value).all(), name
    run = MlflowClient(tracking_uri()).get_run(cli.trainer.logger.run_id)
    losses = {k: v for k, v in run.data.metrics.items() if k.startswith("loss/")}
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert math.isfinite(run.data.metrics["eval/return_mean"])
    if family != "dyna_q":  # the tabular learner has no network
        assert losses, "the run must have taken gradient steps"
        assert torch.bfloat16 in probe.dtypes, "updates must run under bf16 autocast"
        # Evaluation (and the planning inside it) acts in full precision, like collection.
        assert probe.eval_dtypes == {torch.float32}, probe.eval_dtypes
    # Acting is full precision: the collected batch (what the replay buffer stores) has no bf16 entries.
    buffer = getattr(cli.model, "replay_buffer", None)
    if buffer is not None and len(buffer):
        stored = buffer[:]
        assert all(stored.get(key).dtype != torch.bfloat16 for key in stored.keys(True, True))
