"""benchmarks/atari100k.py: its agents build, and --summarize reads seeds written by separate processes at equal agent steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, REPO_ROOT

from mbrl_lightning.cli import MBRLCLI

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import atari100k  # noqa: E402


def _evaluation(seed: int, steps: int, score: float, run_id: str, agent: str = "bf16") -> dict:
    return {"agent": agent, "seed": seed, "overrides": [], "agent_steps": steps, "score": score,
            "train_agent_steps_per_s": 10.0, "wall_hours": steps / 1000, "run_id": run_id}


def test_summary_reads_the_newest_run_of_each_seed_at_the_budget(tmp_path: Path, capsys) -> None:
    records = [
        _evaluation(0, 10, 60.0, "old"), _evaluation(0, 20, 70.0, "old"),  # superseded by run "new"
        _evaluation(0, 10, 500.0, "new"), _evaluation(0, 20, 900.0, "new"), _evaluation(0, 30, 100.0, "new"),
        _evaluation(1, 10, 300.0, "s1"), _evaluation(1, 20, 700.0, "s1"),
        _evaluation(2, 10, 200.0, "s2"),  # stopped before 20: not in the 20-step summary
        _evaluation(3, 20, 50.0, "old3"), _evaluation(3, 10, 400.0, "new3"),  # its newest run stopped before 20
        _evaluation(0, 20, 111.0, "fp32", agent="agent"),
        {"summary": "bf16", "score_mean": 1.0},
    ]
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    atari100k.summarize_file(path, [20])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    bf16, fp32 = sorted(lines, key=lambda line: line["summary"] != "bf16")
    assert bf16["seeds"] == [0, 1] and bf16["scores"] == [900.0, 700.0]
    assert bf16["score_mean"] == 800.0 and bf16["score_ci95"][0] >= 700.0 and bf16["score_ci95"][1] <= 900.0
    assert fp32["summary"] == "agent" and fp32["scores"] == [111.0]


@pytest.mark.parametrize("agent", sorted(atari100k.AGENTS))
def test_every_benchmark_agent_builds_from_pacman_yaml(agent: str) -> None:
    overrides = atari100k.AGENTS[agent]
    cli = MBRLCLI(["--config", str(CONF_DIR / "pacman.yaml"), *overrides, "--model.replay_storage", "memory",
                   "--model.buffer_size", "64"])
    init = cli.config.model.init_args
    for key, value in zip(overrides[::2], overrides[1::2]):
        if key.startswith("--model."):  # each key reached the model as given (a typo in a key is an error above)
            node = init
            for part in key.removeprefix("--model.").split("."):
                node = node[part]
            assert node == yaml.safe_load(value), (key, node, value)
