"""mbrl-lightning: model-based reinforcement learning with imagination on Lightning and TorchRL."""

__version__ = "0.1.0"
