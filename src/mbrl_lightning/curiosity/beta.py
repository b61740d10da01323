"""The weight beta of intrinsic rewards: fixed, or adapted to the trend of extrinsic returns."""

from __future__ import annotations

from collections import deque

import numpy as np


class FixedBeta:
    """A constant curiosity weight.

    Args:
        value: the weight.
    """

    def __init__(self, value: float = 0.1) -> None:
        self.value = value

    def update(self, extrinsic_return: float) -> float:
        """Ignore the return; the weight stays."""
        return self.value

    def state_dict(self) -> dict:
        """Checkpoint state."""
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.value = state["value"]


class AdaptiveBeta(FixedBeta):
    """The adaptive-imagination design's rule: more curiosity while extrinsic returns fall, less while they rise.

    The trend is the least-squares slope of a moving average of episode returns over the last
    ``window`` updates, relative to the average's magnitude; beta is multiplied by
    ``1 + rate`` when the trend is below ``-tolerance``, by ``1 - rate`` above ``tolerance``,
    and kept within ``[min_value, max_value]``.

    Args:
        value: initial weight.
        min_value: lower bound.
        max_value: upper bound.
        rate: relative change per update.
        window: number of moving-average points the slope is fitted to.
        smoothing: weight of the newest return in the exponential moving average.
        tolerance: relative slope below which the trend counts as flat.
    """

    def __init__(
        self, value: float = 0.2, min_value: float = 0.0, max_value: float = 1.0, rate: float = 0.01, window: int = 10,
        smoothing: float = 0.1, tolerance: float = 0.01,
    ) -> None:
        super().__init__(value)
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.window = window
        self.smoothing = smoothing
        self.tolerance = tolerance
        self.average: float | None = None
        self.history: deque[float] = deque(maxlen=window)

    def trend(self) -> float:
        """Relative slope of the moving average over the window (0 until the window fills)."""
        if len(self.history) < self.window:
            return 0.0
        points = np.asarray(self.history)
        slope = np.polyfit(np.arange(len(points)), points, 1)[0]
        return float(slope / max(abs(points.mean()), 1e-8))

    def update(self, extrinsic_return: float) -> float:
        """Fold in a new extrinsic return and move beta against the trend."""
        self.average = extrinsic_return if self.average is None else (
            self.smoothing * extrinsic_return + (1 - self.smoothing) * self.average
        )
        self.history.append(self.average)
        trend = self.trend()
        if trend < -self.tolerance:
            self.value = min(self.max_value, self.value * (1 + self.rate))
        elif trend > self.tolerance:
            self.value = max(self.min_value, self.value * (1 - self.rate))
        return self.value

    def state_dict(self) -> dict:
        """Checkpoint state."""
        return {"value": self.value, "average": self.average, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.value = state["value"]
        self.average = state["average"]
        self.history = deque(state["history"], maxlen=self.window)
