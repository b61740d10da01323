"""The process's random generators (torch, CUDA, numpy, Python) as checkpoint data, and back."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """Every generator's state, in types that load with ``torch.load(weights_only=True)``."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _numpy_state_to_tensors(np.random.get_state()),
        "python": random.getstate(),
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back the states of :func:`capture_rng`."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(_numpy_state_from_tensors(rng["numpy"]))
    random.setstate(rng["python"])


def _numpy_state_to_tensors(state: tuple) -> tuple:
    """numpy's RNG state with its key array as a tensor, so checkpoints load with ``weights_only``."""
    name, keys, position, has_gauss, cached_gaussian = state
    return name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian


def _numpy_state_from_tensors(state: tuple) -> tuple:
    """Inverse of :func:`_numpy_state_to_tensors`."""
    name, keys, position, has_gauss, cached_gaussian = state
    return name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian
