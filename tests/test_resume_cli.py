"""Resume through the command line: the run's own config, changes listed, a finished run says so, one bar."""

from __future__ import annotations

import fcntl
import os
import pty
import shlex
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml
from conftest import CONF_DIR, REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.cli import main
from mbrl_lightning.tracking import tracking_uri

FIT = [sys.executable, str(REPO_ROOT / "scripts" / "fit.py")]
CONFIG = ["--config", str(CONF_DIR / "cartpole_dqn.yaml")]
TINY = ["--model.total_frames", "512", "--model.frames_per_batch", "128", "--model.learning_starts", "256",
        "--model.updates_per_batch", "2", "--model.eval_episodes", "2", "--model.eval_every_frames", "256"]


def _run_in_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdout (the progress bar draws only on a terminal)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a new pty has 0 columns
    process = subprocess.Popen(args, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:  # a full terminal buffer would block the process
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    process.wait(timeout=300)
    reader.join(timeout=10)
    os.close(leader)
    return process.returncode, b"".join(chunks).decode(errors="replace")


def _config_artifact(run_id: str, name: str) -> dict:
    client = MlflowClient(tracking_uri())
    return yaml.safe_load(Path(client.download_artifacts(run_id, name)).read_text())


def test_resume_keeps_the_run_config_lists_changes_and_a_finished_run_says_how_to_extend(subprocess_env, capsys) -> None:
    # A run started with overrides, on a terminal: one start line, one bar, one end line.
    code, terminal = _run_in_terminal(
        [*FIT, *CONFIG, *TINY, "--model.gamma", "0.95", "--checkpoint.every_n_frames", "256"], subprocess_env)
    assert code == 0, terminal[-2000:]
    lines = [line for line in terminal.replace("\r\n", "\n").split("\n") if line.strip()]
    assert lines[0].startswith("DQN on CartPole-v1 (seed 0) | cpu")
    bars = [line for line in lines if "frames:" in line]
    assert len(bars) == 1 and "512/512" in bars[0].split("\r")[-1], lines
    assert "0it" not in terminal and "Creating it" not in terminal
    assert lines[-2].startswith("Done at frame 512 | final eval return ")
    run_id = lines[-1].split()[2]
    # Each checkpoint is stored once: the MLflow artifact is the local file, hard-linked.
    artifacts = Path(url2pathname(urlparse(MlflowClient(tracking_uri()).get_run(run_id).info.artifact_uri).path))
    for name in ("last.ckpt", "best.ckpt"):
        local, stored = Path("checkpoints") / run_id / name, artifacts / "checkpoints" / name
        assert local.stat().st_ino == stored.stat().st_ino and local.stat().st_nlink == 2, name

    # Resumed with another --config value left in place and one key changed: only that key changes.
    # The resumes run in this process (the command's own main): an interpreter start each is the
    # most of their cost, and the terminal's case above is the one that needs a process of its own.
    capsys.readouterr()
    assert main([*CONFIG, "--ckpt_path", "last", "--model.total_frames", "768"]) == 0
    resumed = capsys.readouterr()
    out = resumed.out.splitlines()
    assert out[1] == "Resuming with the run's recorded config; changed on the command line: model.total_frames: 512 -> 768"
    assert out[2].startswith("Kept from the run (differs in --config): ")
    assert "model.gamma: 0.99 -> 0.95" in out[2] and "total_frames" not in out[2]
    config = _config_artifact(run_id, "config_resumed.yaml")
    assert config["model"]["init_args"]["gamma"] == 0.95 and config["checkpoint"]["every_n_frames"] == 256
    assert config["model"]["init_args"]["total_frames"] == 768
    # Not a terminal: plain progress lines, no redrawn bar; the end line names the best checkpoint on disk.
    assert "\r" not in resumed.out and any(line.startswith("frames 768/768 (100%)") for line in out)
    end = next(line for line in out if line.startswith("Done at frame 768"))
    best = Path(end.split("(")[1].split(")")[0])
    assert best.name == "best.ckpt" and best.is_file(), end

    # Resuming the finished run trains nothing and prints the command that extends it.
    assert main(["--ckpt_path", f"runs:/{run_id}"]) == 0
    message = capsys.readouterr().out.strip()
    assert message.startswith(f"run {run_id} is finished: it has spent its budget of 768 frames"), message
    command = shlex.split(message.split("give a larger budget: ")[1])
    assert command[-4:] == ["--ckpt_path", f"runs:/{run_id}", "--model.total_frames", "1536"]
    steps = MlflowClient(tracking_uri()).get_metric_history(run_id, "train/env_frames")
    assert max(m.step for m in steps) == 768
