"""``quiet_profile``: torch's profiler without the native log lines it prints on every use.

Each profiler start and stop writes lines such as ``USDT: ... profiler_start`` to the process's stderr, and
on a machine without a GPU ``ERROR: ... gpuGetDeviceCount failed with code 35`` — from C++, past Python's
logging and warnings filters. The bench profiles every model's step for its memory peak, so these lines
buried its table. Here the stderr file descriptor points at /dev/null while the profiler runs, so a warning
printed inside is lost too; an exception raised inside still propagates and is printed after it is restored.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from torch.profiler import profile


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def quiet_profile(**kwargs) -> Iterator[profile]:
    """``torch.profiler.profile(**kwargs)`` with its native log lines dropped."""
    with native_stderr_silenced(), profile(**kwargs) as prof:
        yield prof
