"""The command line as users run it: overrides, printed config, one-line errors."""

from __future__ import annotations

import fcntl
import os
import pty
import runpy
import struct
import subprocess
import sys
import termios
import types
from pathlib import Path

import pytest
from conftest import CONF_DIR, REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.callbacks.progress import draws_bars
from mbrl_lightning.cli import MBRLCLI, main
from mbrl_lightning.tracking import tracking_uri

FIT = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py"), "--config", str(CONF_DIR / "cartpole_dqn.yaml")]
TINY = ["--model.total_frames", "512", "--model.learning_starts", "256", "--model.updates_per_batch", "2",
        "--model.eval_episodes", "2", "--model.eval_every_frames", "512"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(FIT + args, capture_output=True, text=True, env=env, timeout=300)


def test_fit_with_overrides_logs_run_to_mlflow(subprocess_env) -> None:
    result = _run([*TINY, "--model.gamma", "0.98", "--seed_everything", "3", "--trainer.enable_progress_bar",
                   "false", "--run_name", "override-check"], subprocess_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MLflow run:" in result.stdout and "Last checkpoint:" in result.stdout
    start = result.stdout.splitlines()[0]
    assert start.startswith("DQN on CartPole-v1 (seed 3) | cpu | precision 32-true | MLflow run ")
    assert "view: mlflow ui --backend-store-uri sqlite:///" in start
    assert "final eval return" in result.stdout and "| best " in result.stdout
    # Lightning's start-up notices and layer table are not shown.
    assert "GPU available" not in result.stdout + result.stderr and "Trainable params" not in result.stdout
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("cartpole_dqn")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "override-check"
    assert run.data.params["model.gamma"] == "0.98"
    assert run.data.tags["algorithm"] == "DQN"
    assert run.data.tags["env_id"] == "CartPole-v1"
    assert run.data.tags["seed"] == "3"
    assert run.data.metrics["train/env_frames"] == 512
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/env_frames")]
    assert steps == list(range(256, 513, 256))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints"} <= artifacts


def test_print_config_shows_resolved_values(capsys) -> None:
    # In this process: a fresh interpreter's imports would be the most of its cost.
    with pytest.raises(SystemExit) as exited:
        main([*FIT[2:], "--model.lr", "0.01", "--print_config"])
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    assert "lr: 0.01" in out
    assert "env_id: CartPole-v1" in out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model.gama", "0.9"], "model.gama: unknown option of mbrl_lightning.algorithms.DQN (did you mean: gamma?)"),
        (["--model.lr", "fast"], "model.lr: expected float, got 'fast'"),
        (["--model.env.env_id", "CartPol-v1"], "env.env_id='CartPol-v1'"),
        (["--model.replay_storage", "disk"], "model.replay_storage: got 'disk'; allowed values: 'memory', 'memmap'"),
        (["--ckpt_path", "nowhere.ckpt"], "--ckpt_path nowhere.ckpt: no such checkpoint file."),
        (["--torch_threads", "-1"], "--torch_threads=-1: must be 0 (torch default) or more."),
        (["--model.lr", "-0.001"], "model.lr=-0.001: must be positive."),
        (["--model.buffer_size", "10"], "model.buffer_size=10: must hold at least one batch (model.batch_size=64)."),
        (["--model.env.env_id", "Pendulum-v1"], "model: DQN needs discrete actions, but Pendulum-v1 has continuous actions"),
    ],
)
def test_bad_input_is_refused_with_one_line(override: list[str], expected: str, capsys) -> None:
    code = main(["--config", str(CONF_DIR / "cartpole_dqn.yaml"), *override])
    stderr = capsys.readouterr().err
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], stderr
    assert not Path("checkpoints").exists()


def test_bad_key_exits_non_zero_from_the_shell(subprocess_env) -> None:
    result = _run(["--model.gama", "0.9"], subprocess_env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: model.gama: unknown option")
    assert "Traceback" not in result.stderr


def _one_error_line(code: int, stderr: str) -> str:
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_imagination_horizon_zero_is_refused(capsys) -> None:
    code = main(["--config", str(CONF_DIR / "cartpole_dqn_imagination.yaml"), "--model.imagined.horizon", "0"])
    assert "model.imagined.horizon=0: must be a positive integer." in _one_error_line(code, capsys.readouterr().err)


def test_corrupted_checkpoint_is_refused(capsys) -> None:
    Path("broken.ckpt").write_bytes(b"not a checkpoint")
    code = main(["--config", str(CONF_DIR / "cartpole_dqn.yaml"), "--ckpt_path", "broken.ckpt"])
    assert "--ckpt_path broken.ckpt: not a readable mbrl-lightning checkpoint" in _one_error_line(code, capsys.readouterr().err)


def test_checkpoint_of_another_algorithm_is_refused(capsys) -> None:
    assert main(["--config", str(CONF_DIR / "cartpole_dqn.yaml"), "--trainer.enable_progress_bar", "false",
                 *TINY[:2], "--model.total_frames", "256", "--model.eval_every_frames", "0"]) == 0
    (checkpoint,) = Path("checkpoints").rglob("last.ckpt")
    capsys.readouterr()
    code = main(["--config", str(CONF_DIR / "cartpole_ppo.yaml"), "--ckpt_path", str(checkpoint)])
    line = _one_error_line(code, capsys.readouterr().err)
    assert "the checkpoint is from DQN on CartPole-v1, but the config builds PPO on CartPole-v1" in line


def test_unreachable_tracking_server_is_refused(capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing listens
    code = main(["--config", str(CONF_DIR / "cartpole_dqn.yaml")])
    line = _one_error_line(code, capsys.readouterr().err)
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:9: the tracking server does not answer" in line


def test_a_mistyped_top_level_flag_and_a_yaml_syntax_error_are_one_line_each(capsys) -> None:
    assert "--confg: unknown option (did you mean: --config?)" in _one_error_line(
        main(["--confg", str(CONF_DIR / "cartpole_dqn.yaml")]), capsys.readouterr().err)
    Path("broken.yaml").write_text("model:\n  init_args:\n    lr: [0.1\n")
    line = _one_error_line(main(["--config", "broken.yaml"]), capsys.readouterr().err)
    assert line.startswith("error: --config broken.yaml:4:1: YAML syntax error: expected ',' or ']'"), line


def test_a_bar_is_drawn_only_on_a_terminal_that_reports_its_width(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal, (tmp_path / "log.txt").open("w") as file:
        assert not draws_bars(file)
        assert not draws_bars(terminal)  # a new pseudo-terminal has 0 columns: tqdm would draw nothing
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        assert draws_bars(terminal)
    os.close(leader)


def test_ctrl_c_before_training_starts_exits_130_with_one_line(monkeypatch, capsys) -> None:
    """An interrupt while the run is set up (the MLflow run, the start line) is no traceback."""

    def interrupted(self) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(MBRLCLI, "start_line", interrupted)
    code = main(["--config", str(CONF_DIR / "cartpole_dqn.yaml"), *TINY, "--experiment_name", "interrupt"])
    assert code == 130
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr == ["interrupted before a checkpoint was written; nothing to resume"]


def test_ctrl_c_after_a_checkpoint_names_it_and_the_resume_command(monkeypatch, capsys) -> None:
    """An interrupt in the last flush, after the run's checkpoints: the hint resumes from the newest."""
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("mbrl_lightning.cli.flush_metrics", interrupted)
    code = main(["--config", str(CONF_DIR / "cartpole_dqn.yaml"), *TINY, "--experiment_name", "interrupt"])
    assert code == 130
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr[0].startswith("interrupted; last checkpoint ") and stderr[0].endswith("last.ckpt")
    assert stderr[1].startswith("resume with: ") and stderr[1].endswith(stderr[0].split()[-1])


class _InterruptedImport(types.ModuleType):
    """A module whose every attribute lookup is interrupted, as Ctrl-C during ``from ... import``."""

    def __getattr__(self, name: str):
        raise KeyboardInterrupt


def test_ctrl_c_during_the_imports_of_fit_py_exits_130_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "mbrl_lightning.cli", _InterruptedImport("mbrl_lightning.cli"))
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO_ROOT / "scripts" / "fit.py"), run_name="__main__")
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted while starting; nothing was trained or saved"]
