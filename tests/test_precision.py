"""bf16 mixed precision on the CPU: every algorithm family trains under autocast and stays finite."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import Callback
from lightning.pytorch.plugins.precision import MixedPrecision
from mlflow.tracking import MlflowClient
from torchrl.data import ReplayBuffer

from mbrl_lightning.cli import MBRLCLI
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
    # Both clip gradients (pacman.yaml's max_grad_norm is 10) for fused Adam optimizers.
    "sac": ("pendulum_sac.yaml", "--model.total_frames", "384", "--model.learning_starts", "256",
            "--model.max_grad_norm", "1.0"),
    "atari_spr": ("pacman.yaml", "--model.total_frames", "32", "--model.frames_per_batch", "8",
                  "--model.updates_per_batch", "8", "--model.learning_starts", "8", "--model.buffer_size", "400",
                  "--model.batch_size", "8", "--model.eval_max_steps", "10", "--model.env.init_args.num_envs", "2",
                  "--model.env.init_args.screen_size", "48", "--model.q_net.init_args.hidden_size", "32",
                  "--model.latent_model.init_args.projection_size", "32",
                  "--model.latent_model.init_args.hidden_channels", "16", "--trainer.callbacks", "[]"),
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
        # Atari's frame replay is not a TorchRL buffer; what it hands back is what it stores.
        stored = buffer[:] if isinstance(buffer, ReplayBuffer) else buffer.sample(4)
        assert all(stored.get(key).dtype != torch.bfloat16 for key in stored.keys(True, True))


class GradientNorms(Callback):
    """Records the total gradient norm each time an optimizer is about to step."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_gradient_clipping_bounds_the_gradient_norm_the_optimizer_steps_with(precision: str) -> None:
    """A clip at 0.01 leaves the gradients each optimizer step sees with norm 0.01."""
    probe = GradientNorms()
    run_fit(*fit_args("cartpole_dqn.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
                      "--model.learning_starts", "128", "--model.total_frames", "256", "--model.max_grad_norm", "0.01",
                      "--model.eval_every_frames", "0", "--model.eval_episodes", "2", "--trainer.precision", precision),
            callbacks=(probe,))
    assert len(probe.norms) == 12  # 4 gradient steps after each of the batches at 128, 192 and 256 frames
    assert probe.norms == pytest.approx([0.01] * 12, rel=1e-3)


def test_gradient_clipping_of_fp16_scaled_gradients_clips_the_true_ones() -> None:
    """Under 16-mixed (GPU only; Lightning turns it into bf16 on the CPU) the clip sees scaled gradients."""
    module = MBRLCLI(fit_args("cartpole_dqn.yaml", "--experiment_name", "parts")).model
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    module._trainer = SimpleNamespace(precision_plugin=MixedPrecision("16-mixed", "cpu", scaler=scaler))
    optimizer = module.configure_optimizers()
    torch.manual_seed(0)
    true_grads = [torch.randn_like(p) for p in module.q_actor.parameters()]
    for parameter, grad in zip(module.q_actor.parameters(), true_grads):
        parameter.grad = grad * 1024.0
    module.clip_gradient_norm(optimizer, 0.01)
    unscaled = torch.cat([p.grad.flatten() / 1024.0 for p in module.q_actor.parameters()])
    assert torch.linalg.vector_norm(unscaled).item() == pytest.approx(0.01, rel=1e-4)
    # The direction is kept: the clip only rescales.
    expected = torch.cat([g.flatten() for g in true_grads])
    assert torch.allclose(unscaled / unscaled.norm(), expected / expected.norm(), atol=1e-6)
