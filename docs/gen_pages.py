"""Pages made at build time: the API reference of every module, the benchmark figures, the concept diagrams.

Run by the mkdocs-gen-files plugin. Nothing here is committed output: a module added or renamed
under ``src/`` gets its reference page on the next build, and every figure is redrawn from the
records in ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "mbrl_lightning"


def reference_pages() -> None:
    """One page per module (``::: dotted.name``) and a literate-nav SUMMARY.md in module order."""
    nav = mkdocs_gen_files.Nav()
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__main__" or any(part.startswith("_") and part != "__init__" for part in parts):
            continue
        page = Path("reference", *parts).with_suffix(".md")
        if parts[-1] == "__init__":
            parts = parts[:-1]
            page = page.with_name("index.md")
        nav[tuple(parts)] = page.relative_to("reference").as_posix()
        with mkdocs_gen_files.open(page, "w") as handle:
            handle.write(f"::: {'.'.join(parts)}\n")
        mkdocs_gen_files.set_edit_path(page, path.relative_to(ROOT))
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as handle:
        handle.writelines(nav.build_literate_nav())


def copy_tree(source: Path, target: str) -> None:
    """Copy every file made under ``source`` into the site at ``target``."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            with mkdocs_gen_files.open(f"{target}/{path.relative_to(source).as_posix()}", "wb") as handle:
                handle.write(path.read_bytes())


def benchmark_results() -> None:
    """``benchmarks/results.md`` and its figures, from the committed JSON-lines records."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import figures  # noqa: PLC0415 (benchmarks/ is not a package)

    with tempfile.TemporaryDirectory() as folder:
        figures.write_report(ROOT / "benchmarks" / "results", Path(folder))
        copy_tree(Path(folder), "benchmarks")


def concept_diagrams() -> None:
    """The pictures of the concept pages."""
    sys.path.insert(0, str(ROOT / "docs"))
    import diagrams  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        diagrams.draw_all(Path(folder))
        copy_tree(Path(folder), "concepts/img")


reference_pages()
benchmark_results()
concept_diagrams()
