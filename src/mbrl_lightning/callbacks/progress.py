"""A progress bar that counts real environment frames instead of batches."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class FrameProgressBar(TQDMProgressBar):
    """Shows frames done out of the budget, frames per second, ETA, recent training return and last eval return."""

    @property
    def train_description(self) -> str:
        """The bar's label."""
        return "frames"

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        """Size the bar by the frame budget; a resumed run starts at its frame count."""
        super().on_train_epoch_start(trainer)
        module = trainer.lightning_module
        bar = self.train_progress_bar
        bar.total = module.total_frames
        # Starting the count at the resumed frame keeps the rate honest.
        bar.initial = bar.n = min(module.frames, module.total_frames)
        bar.unit = " frames"
        bar.set_description(self.train_description)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        """Advance to the module's frame count and show its progress metrics."""
        bar = self.train_progress_bar
        if bar is None or bar.disable:
            return
        bar.n = min(pl_module.frames, pl_module.total_frames)
        # The bar's own rate is the frames per second; the module's copy of it would repeat it.
        shown = {name: f"{value:.4g}" for name, value in pl_module.progress.items() if name != "fps"}
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Leave the final frame count and metrics on screen."""
        self.on_train_batch_end(trainer, pl_module)
        if self._leave:
            self.train_progress_bar.close()
