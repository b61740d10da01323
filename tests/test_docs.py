"""The README and the docs site say what the code does: length, metric names, runnable snippets, quoted records."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import CONF_DIR, REPO_ROOT
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

DOCS = REPO_ROOT / "docs"
METRIC_NAMESPACES = "train|eval|loss|world_model|imagination|curiosity|planner"
# A whole string literal such as "loss/q": f-strings with {placeholders} are documented as patterns.
METRIC_LITERAL = re.compile(rf"""["']((?:{METRIC_NAMESPACES})/[a-z0-9_]+)["']""")


def test_readme_fits_in_250_lines() -> None:
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 250


def test_metric_reference_lists_every_metric_name_in_src() -> None:
    written = {name for path in (REPO_ROOT / "src").rglob("*.py") for name in METRIC_LITERAL.findall(path.read_text())}
    reference = (DOCS / "metrics.md").read_text()
    assert len(written) > 30  # the pattern still finds the names
    missing = sorted(name for name in written if f"`{name}`" not in reference)
    assert not missing, f"metrics logged in src/ but not in docs/metrics.md: {missing}"


def python_block(page: Path, heading: str) -> str:
    """The first ```python block after ``heading`` in a Markdown page."""
    text = page.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_quickstart_runs_as_written(tmp_path: Path, capsys) -> None:
    (tmp_path / "conf").symlink_to(CONF_DIR)  # the snippet names conf/ relative to the repository root
    exec(python_block(DOCS / "getting-started.md", "## From Python"), {})
    frames, run_id = capsys.readouterr().out.split()[-2:]
    assert int(frames) >= 512 and len(run_id) == 32
    assert MlflowClient(tracking_uri()).get_run(run_id).info.status == "FINISHED"


def test_readme_quotes_its_recorded_numbers_from_the_benchmark_records(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import figures

    report = figures.write_report(REPO_ROOT / "benchmarks" / "results", tmp_path).read_text()
    records = sorted((REPO_ROOT / "benchmarks" / "results").rglob("*.jsonl"))
    assert records and all(f"## {path.stem}" in report for path in records)
    drawable = [path for path in records if figures.read_groups(path)[0]]
    assert drawable and len(list((tmp_path / "figures").glob("*_curve.png"))) == len(drawable)
    quoted = re.findall(r"IQM ((?:≥ )?[-\d,.]+ \[[-\d,.]+, [-\d,.]+\])", (REPO_ROOT / "README.md").read_text())
    assert quoted, "the README's algorithm table quotes no recorded IQM"
    for value in quoted:
        assert f"| {value} |" in report, f"README quotes IQM {value}, no record gives it"
