"""Aggregates over seeds: mean, interquartile mean and percentile-bootstrap confidence intervals."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import trim_mean


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (Agarwal et al. 2021), robust to one odd seed."""
    return trim_mean(np.asarray(values, dtype=float), 0.25, axis=axis)


def bootstrap_interval(
    values: np.ndarray, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0, omit_missing: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over axis 0 (seeds); works column-wise on ``[seeds, points]``.

    With ``omit_missing`` a NaN is a seed with no value at that point, and the means there are over
    the seeds that have one; otherwise a NaN makes the interval NaN, as it makes the mean.

    Written here rather than with ``scipy.stats.bootstrap``, which refuses a single seed and is
    slow column by column; resampling seeds of a whole curve at once is one indexing operation.
    """
    values = np.asarray(values, dtype=float)
    generator = np.random.default_rng(seed)
    picks = generator.integers(0, len(values), size=(resamples, len(values)))
    tail = (1 - confidence) / 2 * 100
    if not omit_missing:
        means = values[picks].mean(axis=1)
        return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only missing seeds: no mean, skipped
        means = np.nanmean(values[picks], axis=1)
        return np.nanpercentile(means, tail, axis=0), np.nanpercentile(means, 100 - tail, axis=0)
