"""benchmarks/figures.py reads long runs from their per-evaluation lines and compares seeds at equal frames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import figures  # noqa: E402


def _sac_point(seed: int, frames: int, value: float, run_id: str) -> dict:
    return {"evaluation": True, "algorithm": "sac", "seed": seed, "frames": frames, "return_mean": value,
            "run_id": run_id}


def _atari_point(agent: str, seed: int, steps: int, score: float, run_id: str) -> dict:
    return {"agent": agent, "seed": seed, "agent_steps": steps, "score": score, "overrides": [], "run_id": run_id}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_runs_without_a_final_line_are_drawn_and_read_at_the_common_budget(tmp_path: Path) -> None:
    records = [
        # seed 0 went past the others' budget and restarted at 20k (its 20k evaluation written twice).
        *[_sac_point(0, frames, value, "a") for frames, value in ((10, -5.0), (20, 1.0), (20, 2.0), (30, 3.0), (40, 9.0))],
        *[_sac_point(1, frames, value, "b") for frames, value in ((10, -4.0), (20, 0.0), (30, 5.0))],
        *[_sac_point(2, frames, value, "c") for frames, value in ((10, -3.0), (20, 4.0), (30, 6.0))],
        # seed 3 stopped short: drawn, not counted at the budget.
        _sac_point(3, 10, 7.0, "d"),
        {"summary": True, "algorithm": "sac", "return_mean": 123.0},
        {"unrelated": 1},
    ]
    groups, unknown = figures.read_groups(_write(tmp_path / "sac.jsonl", records))
    assert unknown == 1
    (group,) = groups
    assert group.label == "sac" and group.seeds == [0, 1, 2, 3] and len(group.curves) == 4
    assert group.budget == 30
    assert group.finals == [3.0, 5.0, 6.0]
    assert group.short == ["seed 3 stopped at 10"]
    # Seed 0 extended to 40, seed 1 at 30: both reached 30, only one of two reached 40.
    (group,) = figures.read_groups(_write(tmp_path / "extended.jsonl", records[:8]))[0]
    assert group.budget == 30 and group.finals == [3.0, 5.0] and not group.short
    np.testing.assert_array_equal(group.curves[0], [[10, -5.0], [20, 2.0], [30, 3.0], [40, 9.0]])


def test_a_runs_curve_line_replaces_its_points_and_the_newest_run_of_a_seed_counts(tmp_path: Path) -> None:
    records = [
        _atari_point("bf16", 0, 5, 60.0, "old"),  # started again below: superseded
        _atari_point("bf16", 0, 5, 500.0, "new"),
        _atari_point("bf16", 0, 10, 900.0, "new"),
        {"agent": "bf16", "seed": 0, "final": True, "agent_steps": 10, "score": 900.0, "overrides": [],
         "eval_curve": [[5, 500.0], [10, 900.0]], "run_id": "new"},
        _atari_point("agent", 0, 5, 300.0, "fp32"),
        _atari_point("agent", 0, 5, 310.0, "fp32-ablation") | {"overrides": ["--model.n_step", "3"]},
    ]
    groups, unknown = figures.read_groups(_write(tmp_path / "atari.jsonl", records))
    assert unknown == 0
    by_label = {group.label: group for group in groups}
    assert set(by_label) == {"bf16", "agent", "agent --model.n_step 3"}
    bf16 = by_label["bf16"]
    assert bf16.seeds == [0] and bf16.finals == [900.0]
    np.testing.assert_array_equal(bf16.curves[0], [[5, 500.0], [10, 900.0]])
    assert by_label["agent"].finals == [300.0] and by_label["agent --model.n_step 3"].finals == [310.0]


def test_curve_draws_only_the_chosen_groups_and_names_the_known_ones(tmp_path: Path, monkeypatch, capsys) -> None:
    records = [_atari_point("bf16", 0, 5, 500.0, "a"), _atari_point("bf16", 0, 10, 900.0, "a"),
               _atari_point("agent", 0, 5, 300.0, "b"), _atari_point("agent", 0, 10, 350.0, "b")]
    _write(tmp_path / "atari.jsonl", records)
    drawn: list[list[str]] = []
    curve_figure = figures.curve_figure
    monkeypatch.setattr(figures, "curve_figure",
                        lambda groups, title: (drawn.append([g.label for g in groups]), curve_figure(groups, title))[1])
    png = tmp_path / "curve.png"
    monkeypatch.setattr(sys, "argv", ["figures.py", "--results", str(tmp_path), "--curve", "atari", str(png),
                                      "--groups", "bf16"])
    figures.main()
    assert drawn == [["bf16"]] and png.stat().st_size > 0
    monkeypatch.setattr(sys, "argv", ["figures.py", "--results", str(tmp_path), "--curve", "atari", str(png),
                                      "--groups", "c51"])
    with pytest.raises(SystemExit) as stop:
        figures.main()
    assert stop.value.code == 2
    assert "--groups c51: not in atari.jsonl; its groups: bf16, agent" in capsys.readouterr().err
