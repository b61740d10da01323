"""StopAtReturn on two CPU processes (DDP over gloo): both ranks stop at the same frame, decided by any rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import CONF_DIR, REPO_ROOT

THRESHOLD = 5.0  # an untrained greedy CartPole policy lasts 8 steps or more, so the first evaluation reaches it
EVAL_EVERY = 128  # the second batch of 64 frames (32 per rank)
TOTAL = 512


def test_both_ranks_stop_at_the_first_evaluation_that_reaches_the_threshold_on_either_rank(
        subprocess_env, tmp_path) -> None:
    """Rank 1's own return is held at -1, below the threshold; rank 0's reaches it: both stop there."""
    callbacks = [
        {"class_path": "ddp_stop_probe.LowReturnOnRank", "init_args": {"folder": str(tmp_path), "rank": 1, "value": -1.0}},
        {"class_path": "mbrl_lightning.callbacks.StopAtReturn", "init_args": {"threshold": THRESHOLD}},
    ]
    env = dict(subprocess_env, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]))
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "fit.py"), "--config", str(CONF_DIR / "cartpole_dqn.yaml"),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--plots.enabled", "false", "--checkpoint.every_n_frames", "0",
        "--seed_everything", "3", "--model.total_frames", str(TOTAL), "--model.frames_per_batch", "64",
        "--model.learning_starts", "64", "--model.updates_per_batch", "2", "--model.q_net.init_args.hidden_sizes", "[16]",
        "--model.eval_every_frames", str(EVAL_EVERY), "--model.eval_episodes", "2",
        f"--trainer.callbacks={json.dumps(callbacks)}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError("the 2-process run did not end in 300 s: one rank stopped, the other waits for it") from expired
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]

    # The ranks evaluated alike; rank 0's return reached the threshold, rank 1's own (held at -1) did not.
    assert ranks[0]["own_returns"] == ranks[1]["own_returns"] and ranks[0]["own_returns"][0] >= THRESHOLD
    assert ranks[0]["seen_return"] >= THRESHOLD > ranks[1]["seen_return"] == -1.0
    # Both stopped at the first evaluation, at the same frame, long before the budget, and agree on why.
    for rank in ranks:
        assert (rank["frames"], rank["evaluations"], rank["reached_frame"]) == (EVAL_EVERY, 1, EVAL_EVERY), rank
        assert rank["reached_return"] == ranks[0]["own_returns"][0], rank
