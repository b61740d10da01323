"""Keep freed memory in the process heap, so that the large tensors of every training step do not fault their pages in anew."""

from __future__ import annotations

import ctypes
import functools
import sys

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: allocations below it come from the heap
TRIM_THRESHOLD = 1 << 30  # freed heap memory kept for reuse before any goes back to the kernel
TOP_PAD = 64 << 20  # the heap grows by this much at a time


@functools.cache
def retain_freed_memory() -> bool:
    """Serve allocations under 32 MB from glibc's heap and keep up to 1 GB of it freed; False where malloc is not glibc's.

    Why: by default glibc maps each allocation above a threshold (128 KB, rising with the sizes
    freed) as fresh pages and gives the heap's free top back to the kernel beyond twice that; a
    training step that makes its multi-megabyte float frames, activations and gradients anew then
    takes a page fault for every 4 KB it first writes. On the Atari agent's step that was about
    a tenth of its CPU time (``benchmarks/atari_update.py``, ``docs/algorithms/atari.md``).
    Numbers are unchanged; the process keeps its peak heap instead of returning it.
    """
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])
