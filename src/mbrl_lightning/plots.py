"""Readable headless figures: titled axes with units, legends, optional shaded intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless: figures are written, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402


@dataclass(frozen=True)
class Curve:
    """One line of a figure, with an optional shaded interval [low, high]."""

    label: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    style: str = "-"


def line_figure(
    curves: Sequence[Curve],
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    log_y: bool = False,
    engineering_x: bool = True,
) -> plt.Figure:
    """A figure of ``curves`` with a title, axis labels (with units) and a legend."""
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=100)
    for index, curve in enumerate(curves):
        colour = f"C{index % 10}"
        axes.plot(curve.x, curve.y, curve.style, color=colour, label=curve.label, linewidth=1.6)
        if curve.low is not None and curve.high is not None:
            axes.fill_between(curve.x, curve.low, curve.high, color=colour, alpha=0.2, linewidth=0)
    if log_y:
        axes.set_yscale("log")
    if engineering_x:
        # 12k instead of 12000: frame counts get long.
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if curves:
        axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    return figure


def close(figure: plt.Figure) -> None:
    """Free a figure's memory (pyplot keeps every figure alive until closed)."""
    plt.close(figure)
