"""Faults lose nothing: signals stop at a batch boundary with a checkpoint, divergence keeps the last good one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, fit_args, run_fit
from lightning.pytorch import Callback
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import main
from mbrl_lightning.tracking import tracking_uri

SMALL = ("--model.frames_per_batch", "64", "--model.updates_per_batch", "4", "--model.learning_starts", "128",
         "--model.eval_every_frames", "0", "--checkpoint.every_n_frames", "256")


class PoisonWeights(Callback):
    """Fault injection: a NaN in the Q-network before the batch that ends at frame 704."""

    def on_train_batch_start(self, trainer, module, *_) -> None:
        if module.frames >= 600:
            with torch.no_grad():
                next(module.q_actor.parameters()).view(-1)[0] = float("nan")


def _frames_in(path: Path) -> int:
    return torch.load(path, weights_only=True)["mbrl"]["frames"]


def test_divergence_stops_with_one_line_marks_the_run_failed_and_keeps_the_good_checkpoint(capsys) -> None:
    code = main(fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "4096",
                         "--trainer.callbacks+=test_reliability.PoisonWeights"))
    stderr = capsys.readouterr().err
    assert code == 1
    line = [line for line in stderr.splitlines() if line.startswith("error:")][-1]
    assert "training diverged: loss/q=nan at frame 704" in line, stderr
    client = MlflowClient(tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("cartpole_dqn").experiment_id])
    assert run.info.status == "FAILED"
    assert "loss/q=nan" in run.data.tags["divergence"]
    (checkpoint,) = Path("checkpoints").rglob("last.ckpt")
    assert _frames_in(checkpoint) == 512  # the periodic checkpoint before the fault, not overwritten
    weights = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())


def _checkpoint_state() -> tuple[int, int] | None:
    """Inode and write time of the one ``last.ckpt`` (a new checkpoint replaces the file), None before the first."""
    found = list(Path("checkpoints").rglob("last.ckpt"))
    return (found[0].stat().st_ino, found[0].stat().st_mtime_ns) if found else None


def _stop_after_a_checkpoint(command: list[str] | str, sent: signal.Signals, env: dict[str, str]) -> tuple[int, str]:
    """Start ``command`` (a string: in the shell), send ``sent`` after its next checkpoint; the stop frame and the hint."""
    before = _checkpoint_state()
    process = subprocess.Popen(command, shell=isinstance(command, str), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _checkpoint_state() in (None, before):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no periodic checkpoint in time"
        time.sleep(0.2)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sent, stderr[-2000:]
    message, hint = stderr.strip().splitlines()[-2:]
    assert message.startswith(f"interrupted by {sent.name} at frame ")
    frames = int(message.split(" at frame ")[1].split(";")[0].replace(",", ""))
    (checkpoint,) = Path("checkpoints").rglob("last.ckpt")
    assert _frames_in(checkpoint) == frames and frames % 64 == 0  # a whole number of batches
    assert hint.startswith("resume with: ")
    return frames, hint.removeprefix("resume with: ")


def test_a_signal_stops_at_a_batch_boundary_with_a_checkpoint_and_the_pasted_hint_resumes(subprocess_env) -> None:
    """SIGTERM stops a run; its hint, pasted into the shell, resumes it; Ctrl-C's SIGINT stops that; its hint ends it.

    One chain of three processes instead of a fresh run per signal: each start costs seconds of imports.
    """
    command = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py"),
               *fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "1000000")]
    stopped, hint = _stop_after_a_checkpoint(command, signal.SIGTERM, subprocess_env)
    # ``exec``: the signal reaches the pasted command itself, not the shell that started it.
    resumed, hint = _stop_after_a_checkpoint(f"exec {hint}", signal.SIGINT, subprocess_env)
    assert resumed > stopped  # the pasted hint continued the run from its checkpoint

    # The hint is a command that works pasted into the shell: here with a budget just past the stop.
    pasted = subprocess.run(f"{hint} --model.total_frames {resumed + 128}", shell=True,
                            env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert pasted.returncode == 0, pasted.stderr[-2000:]
    assert f"Done at frame {resumed + 128:,}" in pasted.stdout, pasted.stdout


def test_a_checkpoint_write_that_dies_halfway_never_replaces_the_good_one() -> None:
    from types import SimpleNamespace

    from mbrl_lightning.callbacks import FrameCheckpoint

    run_fit(*fit_args("cartpole_dqn.yaml", *SMALL, "--model.total_frames", "256"))
    (good,) = Path("checkpoints").rglob("last.ckpt")
    before = good.read_bytes()

    def dies_halfway(path, weights_only=False) -> None:
        Path(path).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    trainer = SimpleNamespace(save_checkpoint=dies_halfway, is_global_zero=True, logger=None)
    with pytest.raises(OSError, match="disk full"):
        FrameCheckpoint(dirpath=str(good.parent)).save(trainer)
    assert good.read_bytes() == before
    assert _frames_in(good) == 256


# Each process imports, says it is ready, waits for the go, then opens the store: all open it at once.
_OPEN_STORE = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient
from mbrl_lightning.tracking import tracking_uri
Path(f"ready_{sys.argv[1]}").touch()
while not Path("go").exists():
    time.sleep(0.01)
MlflowClient(tracking_uri()).search_experiments(max_results=1)
"""


@pytest.mark.fresh_store
def test_runs_started_together_in_a_fresh_folder_share_one_store(subprocess_env) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_STORE, str(i)], env=subprocess_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    while not all(Path(f"ready_{i}").exists() or processes[i].poll() is not None for i in range(3)):
        time.sleep(0.05)
    Path("go").touch()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    assert MlflowClient(tracking_uri()).get_experiment_by_name("Default") is not None


def test_the_divergence_check_names_a_non_finite_weight_and_passes_large_finite_ones() -> None:
    # The check reads one norm of all weights; a NaN weight must still be found and named, and weights
    # whose norm overflows (1e30) while each is finite must not stop training.
    from types import SimpleNamespace

    from mbrl_lightning.algorithms.base import RLModule
    from mbrl_lightning.errors import DivergenceError

    net = torch.nn.Linear(3, 2)
    module = SimpleNamespace(parameters=net.parameters, named_parameters=net.named_parameters, loggers=[], frames=7)
    RLModule.check_finite(module, {"loss/q": 1.0})
    with torch.no_grad():
        net.weight[0, 0] = net.bias[0] = 1e30
    RLModule.check_finite(module, {"loss/q": 1.0})
    with torch.no_grad():
        net.bias[1] = float("nan")
    with pytest.raises(DivergenceError, match="parameter bias at frame 7"):
        RLModule.check_finite(module, {"loss/q": 1.0})
