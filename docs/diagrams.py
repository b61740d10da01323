"""The concept pages' pictures, drawn with matplotlib at build time (no web service, no committed images)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BOX = {"boxstyle": "round,pad=0.02,rounding_size=0.02", "linewidth": 1.2}


def _box(axes: plt.Axes, x: float, y: float, text: str, colour: str, width: float = 0.22, height: float = 0.13) -> None:
    axes.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, facecolor=colour,
                                  edgecolor="#333333", **BOX))
    axes.text(x, y, text, ha="center", va="center", fontsize=9, wrap=True)


def _arrow(axes: plt.Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
           dashed: bool = False, bend: float = 0.0) -> None:
    axes.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.2,
                                   linestyle="--" if dashed else "-", color="#333333",
                                   connectionstyle=f"arc3,rad={bend}"))
    if text:
        axes.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.03, text, ha="center", fontsize=8,
                  color="#444444")


def _canvas(width: float = 9, height: float = 4) -> tuple[plt.Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=(width, height), dpi=100)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.axis("off")
    return figure, axes


def imagination_loop(path: Path) -> None:
    """Dyna-style loop: real data trains the model, the model imagines data for the learner."""
    figure, axes = _canvas()
    _box(axes, 0.12, 0.68, "environment\n(real frames)", "#cfe2f3")
    _box(axes, 0.42, 0.68, "replay buffer\n(real transitions)", "#d9ead3")
    _box(axes, 0.42, 0.25, "world model\n(MLP / ensemble / conv)", "#fff2cc")
    _box(axes, 0.72, 0.25, "imagined rollouts\nhorizon H, weight w", "#fce5cd")
    _box(axes, 0.85, 0.68, "learner\n(Q / PPO / critic)", "#ead1dc")
    _arrow(axes, (0.23, 0.68), (0.31, 0.68), "collect")
    _arrow(axes, (0.42, 0.61), (0.42, 0.32), "fit (held-out split)")
    _arrow(axes, (0.53, 0.65), (0.61, 0.32), "start states", bend=0.2)
    _arrow(axes, (0.53, 0.25), (0.61, 0.25), "imagine")
    _arrow(axes, (0.75, 0.32), (0.84, 0.61), "mixed batch")
    _arrow(axes, (0.53, 0.68), (0.74, 0.68), "real batch")
    _arrow(axes, (0.85, 0.75), (0.12, 0.75), dashed=True, bend=0.15)
    axes.text(0.48, 0.93, "the policy acts in the environment", ha="center", fontsize=8, color="#444444")
    axes.text(0.5, 0.04, "confidence = exp(-held-out loss) gates how much is imagined", ha="center", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def imagination_branches(path: Path) -> None:
    """Imagined rollouts branching from real states, one line per ensemble particle."""
    generator = np.random.default_rng(3)
    figure, axes = plt.subplots(figsize=(9, 3.6), dpi=100)
    steps = np.arange(40)
    real = np.cumsum(generator.normal(0, 0.3, size=40)) + np.sin(steps / 6)
    axes.plot(steps, real, color="black", linewidth=2, label="real trajectory")
    for start in (5, 17, 29):
        for member in range(5):
            drift = np.cumsum(generator.normal(0.04 * (member - 2), 0.12 + 0.04 * member, size=8))
            branch = np.concatenate([[real[start]], real[start] + drift])
            axes.plot(np.arange(start, start + 9), branch, "--", color=f"C{member}", alpha=0.8, linewidth=1,
                      label=f"imagined, ensemble member {member}" if start == 5 else None)
        axes.plot(start, real[start], "o", color="black")
    axes.set_xlabel("time step")
    axes.set_ylabel("a state feature")
    axes.set_title("Imagination: rollouts of horizon H = 8 from real start states; members spread as error compounds")
    axes.legend(fontsize="x-small", loc="upper left", ncol=2)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def curiosity_flow(path: Path) -> None:
    """An intrinsic reward added to the extrinsic one, scaled by a fixed or adaptive beta."""
    figure, axes = _canvas(9, 3.4)
    _box(axes, 0.12, 0.6, "transition\n(s, a, s')", "#cfe2f3")
    _box(axes, 0.42, 0.6, "curiosity module\nRND / ICM / disagreement\n/ imagination entropy", "#fff2cc", 0.26, 0.2)
    _box(axes, 0.72, 0.6, "r = r_ext + β · r_int", "#d9ead3")
    _box(axes, 0.72, 0.18, "β: fixed, or adapted to\nthe trend of extrinsic returns", "#ead1dc", 0.3, 0.16)
    _box(axes, 0.93, 0.6, "learner", "#fce5cd", 0.11)
    _arrow(axes, (0.23, 0.6), (0.29, 0.6))
    _arrow(axes, (0.55, 0.6), (0.61, 0.6), "r_int / running std")
    _arrow(axes, (0.72, 0.27), (0.72, 0.52))
    _arrow(axes, (0.83, 0.6), (0.875, 0.6))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def mpc_loop(path: Path) -> None:
    """Sampling-based MPC: candidates rolled through the model, elites refit, first action executed."""
    generator = np.random.default_rng(0)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    horizon = np.arange(16)
    candidates = np.cumsum(generator.normal(0, 0.35, size=(60, 16)), axis=1)
    score = -np.abs(candidates[:, -1] - 2.0)
    elites = np.argsort(score)[-6:]
    for index, candidate in enumerate(candidates):
        is_elite = index in elites
        left.plot(horizon, candidate, color="C3" if is_elite else "grey", alpha=0.9 if is_elite else 0.25,
                  linewidth=1.6 if is_elite else 0.8)
    left.axhline(2.0, color="C2", linestyle=":", label="high reward")
    left.plot([], [], color="C3", label="elites (CEM refits to these)")
    left.plot([], [], color="grey", alpha=0.4, label="candidate action sequences")
    left.set_title("one planning step: candidates through the model")
    left.set_xlabel("planned step (horizon)")
    left.set_ylabel("predicted state")
    left.legend(fontsize="x-small", loc="lower left")
    left.grid(True, alpha=0.3)
    right.axis("off")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    _box(right, 0.25, 0.8, "sample N sequences\n(mean, std)", "#cfe2f3", 0.36)
    _box(right, 0.75, 0.8, "roll through model\nP particles each", "#fff2cc", 0.36)
    _box(right, 0.75, 0.45, "score: sum of\npredicted rewards", "#d9ead3", 0.36)
    _box(right, 0.25, 0.45, "refit to elites\n(CEM) / weight (MPPI)", "#ead1dc", 0.36)
    _box(right, 0.5, 0.1, "act with the first action;\nshift the plan (warm start)", "#fce5cd", 0.5)
    _arrow(right, (0.43, 0.8), (0.57, 0.8))
    _arrow(right, (0.75, 0.73), (0.75, 0.52))
    _arrow(right, (0.57, 0.45), (0.43, 0.45))
    _arrow(right, (0.25, 0.52), (0.25, 0.73), "iterate")
    _arrow(right, (0.25, 0.38), (0.42, 0.17))
    right.set_title("model-predictive control, every real step")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def mcts_tree(path: Path) -> None:
    """A search tree: selection by UCB/PUCT, expansion by one model step, leaf value, backup."""
    figure, axes = _canvas(8, 3.6)
    nodes = {"root": (0.5, 0.88), "L": (0.3, 0.6), "R": (0.7, 0.6), "LL": (0.2, 0.32), "LR": (0.4, 0.32),
             "LRL": (0.4, 0.06)}
    for child, parent in (("L", "root"), ("R", "root"), ("LL", "L"), ("LR", "L"), ("LRL", "LR")):
        (x0, y0), (x1, y1) = nodes[parent], nodes[child]
        axes.plot([x0, x1], [y0, y1], color="C3" if child in ("L", "LR", "LRL") else "grey", linewidth=2)
    for name, (x, y) in nodes.items():
        axes.plot(x, y, "o", markersize=16, color="C0" if name != "LRL" else "C2", zorder=3)
    axes.text(0.56, 0.9, "root: the real state; act with its most visited action", fontsize=8)
    axes.text(0.02, 0.72, "1. select by UCB1 / PUCT\n(min-max normalised Q)", fontsize=8, color="C3")
    axes.text(0.46, 0.12, "2. expand: one model step", fontsize=8, color="C2")
    axes.text(0.46, 0.02, "3. value the leaf: value net and/or random rollouts", fontsize=8, color="C2")
    axes.text(0.74, 0.4, "4. back up the\ndiscounted return", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def draw_all(out: Path) -> list[Path]:
    """Every picture, as PNGs in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    for draw in (imagination_loop, imagination_branches, curiosity_flow, mpc_loop, mcts_tree):
        path = out / f"{draw.__name__}.png"
        draw(path)
        drawn.append(path)
    return drawn


if __name__ == "__main__":
    for picture in draw_all(Path("build/diagrams")):
        print(picture)
