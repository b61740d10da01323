"""Errors the command line reports as one line instead of a traceback."""


class ConfigurationError(ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""


def require(valid: bool, key: str, value: object, allowed: str) -> None:
    """Raise a ConfigurationError ``key=value: allowed`` unless ``valid``."""
    if not valid:
        raise ConfigurationError(f"{key}={value!r}: {allowed}.")


class DivergenceError(RuntimeError):
    """A loss or a parameter became non-finite; training stopped before any checkpoint of it."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training at a batch boundary, after a final checkpoint."""

    def __init__(self, signal_name: str, signal_number: int, frames: int, checkpoint: str | None) -> None:
        self.signal_name = signal_name
        self.signal_number = signal_number
        self.frames = frames
        self.checkpoint = checkpoint
        saved = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (none configured)"
        super().__init__(f"interrupted by {signal_name} at frame {frames}; {saved}; resume with --ckpt_path last")
