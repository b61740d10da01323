"""Ctrl-C and SIGTERM stop training at the next batch boundary with a final checkpoint."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from mbrl_lightning.callbacks.checkpoint import FrameCheckpoint
from mbrl_lightning.errors import TrainingInterrupted

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt(Callback):
    """Turn SIGINT/SIGTERM into a clean stop: finish the batch, checkpoint, raise TrainingInterrupted.

    A signal can arrive in the middle of an update, where the module's state is half-changed;
    the handler only records it, and the stop happens after the batch completes. A second signal
    while waiting falls back to an immediate KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Install the handlers (signals can only be handled in the main thread)."""
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._record) for number in HANDLED_SIGNALS}

    def _record(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore()
            raise KeyboardInterrupt
        self.received = number

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """At the batch boundary after a signal: write the checkpoint and stop."""
        if self.received is None:
            return
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, FrameCheckpoint)), None)
        path = checkpoint.save(trainer) if checkpoint is not None else None
        number = self.received
        raise TrainingInterrupted(signal.Signals(number).name, number, pl_module.frames, str(path) if path else None)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Give the signals back."""
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Give the signals back."""
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
