"""Progress that counts real environment frames (or agent steps) instead of batches: a bar or plain lines."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


def draws_bars(stream: Any) -> bool:
    """Whether ``stream`` is a terminal that reports a width, where a redrawn bar shows."""
    # A pseudo-terminal nobody sized (``script`` without a terminal, some container runtimes)
    # reports 0 columns, and tqdm's dynamic width then draws an empty bar: plain lines show there.
    if not stream.isatty():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except OSError:
        return False


def progress_unit(module: LightningModule) -> str:
    """What the module's budget counts: agent steps where one step is several emulator frames (Atari), else frames."""
    return "agent steps" if getattr(module.env, "frame_skip", 1) > 1 else "frames"


def shown_metrics(module: LightningModule) -> dict[str, str]:
    """The module's progress metrics as short strings; the rate is the progress display's own."""
    return {name: f"{value:.4g}" for name, value in module.progress.items() if name != "fps"}


class FrameProgressBar(TQDMProgressBar):
    """Shows frames done out of the budget, frames per second, ETA, recent training return and last eval return."""

    def on_train_start(self, trainer: Trainer, *_: Any) -> None:
        """No bar yet: it is drawn once its size is known, so no empty bar precedes it."""

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        """Draw the one bar, sized by the budget; a resumed run starts at its frame count."""
        module = trainer.lightning_module
        unit = progress_unit(module)
        # Created with its size, so that its first drawing is already the real bar; starting the
        # count at the resumed frame keeps the rate honest.
        self.train_progress_bar = Tqdm(
            desc=unit, total=module.total_frames, initial=min(module.frames, module.total_frames), unit=f" {unit}",
            disable=self.is_disabled, leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Advance to the module's frame count and show its progress metrics."""
        bar = self._train_progress_bar
        if bar is None or bar.disable:
            return
        bar.n = min(pl_module.frames, pl_module.total_frames)
        bar.set_postfix(shown_metrics(pl_module), refresh=False)
        bar.refresh()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Leave the final frame count and metrics on screen."""
        self.on_train_batch_end(trainer, pl_module)
        self.train_progress_bar.close()

    def on_train_end(self, *_: Any) -> None:
        """The bar is closed at the epoch's end (and never drawn when training ends before an epoch)."""
        if self._train_progress_bar is not None:
            self._train_progress_bar.close()


class FrameProgressLines(ProgressBar):
    """Plain progress lines for a file or pipe, where a redrawn bar would pile up as one long line.

    A line is printed each time another ``every_fraction`` of the budget is done, or ``every_seconds``
    after the previous line, whichever comes first, and once at the end.

    Args:
        every_fraction: share of the budget between two lines.
        every_seconds: longest wait between two lines.
    """

    def __init__(self, every_fraction: float = 0.1, every_seconds: float = 60.0) -> None:
        super().__init__()
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self._enabled = True
        self._start: tuple[float, int] = (0.0, 0)
        self._last_line: tuple[float, int] = (0.0, 0)

    def disable(self) -> None:
        """Print nothing (Lightning calls this on the ranks that do not report)."""
        self._enabled = False

    def enable(self) -> None:
        """Print again."""
        self._enabled = True

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        """Remember where and when the count starts (a resumed run starts at its frame count)."""
        now = time.monotonic()
        self._start = self._last_line = (now, trainer.lightning_module.frames)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Print a line when another share of the budget is done or the time since the last one is up."""
        now, frames = time.monotonic(), pl_module.frames
        step = max(int(pl_module.total_frames * self.every_fraction), 1)
        crossed = frames // step > self._last_line[1] // step
        if crossed or now - self._last_line[0] >= self.every_seconds:
            self._print(pl_module, now)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The last line, unless the batch's line just said the same."""
        if pl_module.frames != self._last_line[1]:
            self._print(pl_module, time.monotonic())

    def _print(self, module: LightningModule, now: float) -> None:
        self._last_line = (now, module.frames)
        if not self._enabled:
            return
        total, frames = module.total_frames, min(module.frames, module.total_frames)
        unit = progress_unit(module)
        elapsed = now - self._start[0]
        rate = (frames - self._start[1]) / elapsed if elapsed > 0 else 0.0
        left = f", {timedelta(seconds=round((total - frames) / rate))} left" if rate > 0 else ""
        metrics = "".join(f", {name}={value}" for name, value in shown_metrics(module).items())
        print(f"{unit} {frames:,}/{total:,} ({100 * frames / total:.0f}%), {rate:.1f} {unit}/s{left}{metrics}",
              file=sys.stdout, flush=True)
