"""Metric histories of MLflow runs as arrays indexed by env frames (the step of every metric)."""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient

from mbrl_lightning.plots import Curve


def metric_history(client: MlflowClient, run_id: str, key: str) -> np.ndarray:
    """``[n, 2]`` array of (env frames, value) of ``key``, sorted by frames; a step logged twice keeps its last value.

    A resumed run repeats the steps between its last checkpoint and the kill; the later values win.
    """
    points: dict[int, float] = {}
    for metric in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step)):
        points[metric.step] = metric.value
    if not points:
        return np.zeros((0, 2))
    steps = sorted(points)
    return np.array([[step, points[step]] for step in steps], dtype=float)


def joined(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of two histories at the frames both have (e.g. episode count and return)."""
    common, first_index, second_index = np.intersect1d(first[:, 0], second[:, 0], return_indices=True)
    return first[first_index, 1], second[second_index, 1]


def run_curves(client: MlflowClient, run_id: str) -> dict[str, list[Curve]]:
    """The per-run training figures' curves, keyed by figure name (empty lists when data is missing)."""
    train = metric_history(client, run_id, "train/episode_return")
    episodes = metric_history(client, run_id, "train/episodes")
    evaluation = metric_history(client, run_id, "eval/return_mean")
    spread = metric_history(client, run_id, "eval/return_std")
    imagined = metric_history(client, run_id, "imagination/frames")
    per_episode = []
    if len(train) and len(episodes):
        count, score = joined(episodes, train)
        per_episode.append(Curve("training episodes (mean of those ending in a batch)", count, score))
    per_frames = []
    if len(train):
        per_frames.append(Curve("training episodes", train[:, 0], train[:, 1]))
    if len(evaluation):
        std = joined(evaluation, spread)[1] if len(spread) == len(evaluation) else None
        low = evaluation[:, 1] - std if std is not None else None
        high = evaluation[:, 1] + std if std is not None else None
        per_frames.append(Curve("deterministic evaluation (mean ± std)", evaluation[:, 0], evaluation[:, 1], low, high, "-o"))
    data = []
    if len(imagined):
        frames = imagined[:, 0]
        data = [Curve("real (environment)", frames, frames), Curve("imagined (world model)", frames, imagined[:, 1])]
    return {"score_per_episode": per_episode, "score_per_iteration": per_frames, "real_vs_imagined_frames": data}
