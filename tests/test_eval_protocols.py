"""benchmarks/eval_protocols.py scores one Atari checkpoint under each evaluation protocol, on the same games."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, fit_args, run_fit
from test_atari_spr import SPR_TINY


def test_every_protocol_scores_the_same_checkpoint_on_the_same_games(subprocess_env: dict[str, str]) -> None:
    run_fit(*fit_args("pacman.yaml", *SPR_TINY, "--trainer.precision", "32-true"))
    (checkpoint,) = Path("checkpoints").rglob("last.ckpt")  # each test runs in a folder of its own
    env = dict(subprocess_env)
    env["PYTHONPATH"] = f"{REPO_ROOT / 'benchmarks'}:{env['PYTHONPATH']}"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "eval_protocols.py"), "--ckpt_path",
                           str(checkpoint), "--episodes", "2", "--max_steps", "30"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["protocol"] for line in lines] == ["greedy", "epsilon", "noise", "noise_epsilon"]
    assert all(line["episodes"] == 2 and len(line["scores"]) == 2 and line["frames"] == 32 for line in lines)
