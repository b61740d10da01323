"""Keep a benchmark's standard output for its JSON lines alone."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to standard output, by Python or by C code, to standard error.

    ``contextlib.redirect_stdout`` alone misses C libraries that print to file descriptor 1
    (pybullet prints ``argv[0]=`` at every connection), which would interleave with the records.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
