"""What every planner reports: planning time per action and the return it expects."""

from __future__ import annotations

import math


class PlanningStats:
    """Accumulates planning time and actions between two reads of the ``planner/*`` metrics."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.actions_planned = 0
        self.last_predicted_return = math.nan

    def record(self, seconds: float, actions: int, predicted_return: float) -> None:
        """Add one planning call: its duration, the actions it chose and their predicted return."""
        self.seconds += seconds
        self.actions_planned += actions
        self.last_predicted_return = predicted_return

    def pop_metrics(self) -> dict[str, float]:
        """``planner/predicted_return`` and ``planner/seconds_per_action`` since the last call."""
        metrics = {"planner/predicted_return": self.last_predicted_return}
        if self.actions_planned:
            metrics["planner/seconds_per_action"] = self.seconds / self.actions_planned
        self.seconds = 0.0
        self.actions_planned = 0
        return metrics
