"""TorchRL's HardUpdate with the copy on every N-th step, as its interval's name says."""

from __future__ import annotations

from torch import Tensor
from torchrl.objectives import HardUpdate


class EveryNHardUpdate(HardUpdate):
    """``HardUpdate`` that copies the online network into the target after every ``N``-th ``step()``.

    TorchRL 0.14's ``HardUpdate(value_network_update_interval=N)`` copies when its counter,
    counting from 0, equals ``N`` and then resets it to 0, so it copies after steps ``N + 1``,
    ``2N + 2``, ...: every ``N + 1`` steps, and never "every step" for any ``N``. Here ``counter``
    is the number of steps since the last copy (TorchRL's name and meaning, so checkpoints keep it),
    and the copy comes when it reaches ``N``; the parameters are walked only on the steps that copy.
    """

    def _step(self, p_source: Tensor, p_target: Tensor) -> None:
        p_target.data.copy_(p_source.data)

    def step(self) -> None:
        """Count one gradient step; copy every target parameter when ``N`` steps passed since the last copy."""
        self.counter += 1
        # ``>=``: a counter saved by TorchRL's HardUpdate can hold N (it copies one step later).
        if self.counter >= self.value_network_update_interval:
            self.counter = 0
            super(HardUpdate, self).step()
