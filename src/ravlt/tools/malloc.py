"""Keep freed memory in the process instead of handing it back to the OS (glibc only).

A training step allocates and frees gigabytes of activations. glibc serves big blocks with ``mmap``
and returns them on ``free`` (and trims the heap top), so the next step page-faults every page in
again: measured on a 2-core CPU, a RAVLT-S training step at 224², batch 16, took 530 k page faults
and 1.35 s of system time, and ran at 0.70× convnext_tiny's speed; with freed memory kept it had
none and ran at 1.00×. The price is that the process's resident memory stays at its peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = -1  # glibc converts mallopt's int to size_t here: -1 is SIZE_MAX
GLIBC_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}  # malloc.h's DEFAULT_TRIM_THRESHOLD, _MMAP_MAX


# the same settings for processes started from this one (DDP workers, dataloader workers under spawn)
INHERITED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62)}


@functools.cache  # platform.libc_ver reads the interpreter's file: 2 ms a call, and the bench asks between steps
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never trim it, in this process and the processes it
    starts; returns False where glibc is absent."""
    libc = _glibc()
    if libc is None:
        return False
    os.environ.update(INHERITED_ENV)
    done = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    if not done:
        log.warning("mallopt refused the settings: freed memory goes back to the OS as usual")
    return done


def give_freed_memory_back() -> None:
    """Undo :func:`keep_freed_memory`: glibc's default settings here and in the processes started later,
    and the heap's free memory handed back to the OS now."""
    for key in INHERITED_ENV:
        os.environ.pop(key, None)
    libc = _glibc()
    if libc is None:
        return
    for parameter, value in GLIBC_DEFAULTS.items():
        libc.mallopt(parameter, value)
    libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2() -> _MallInfo2 | None:
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        return None
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2()


def heap_bytes() -> int | None:
    """The bytes glibc's arenas hold outside blocks of their own mapping (``mallinfo2().arena``): the heap's size,
    which grows when no free block fits an allocation; None without glibc >= 2.33."""
    info = _mallinfo2()
    return None if info is None else info.arena


def grow_heap_top(nbytes: int, block: int = 64 << 20) -> int:
    """After :func:`keep_freed_memory`: grow the heap by at least ``nbytes``, fault that memory in and free it, so that
    it stays in the process as the heap's top. An allocation that later finds no free block large enough is then
    carved from resident memory instead of growing the heap into fresh pages, each faulted in on first touch.

    Many models taking turns in one process (the bench) fragment the heap: after warm rounds, a timed step still grew
    it now and then, by up to 120 MiB, and page-faulted exactly as many pages as the heap grew (docs/performance.md).
    Free blocks of ``block`` bytes or more are taken (untouched) before the top; returns how many
    bytes the heap grew by (0 without glibc's ``mallinfo2``, or where big blocks are mmap'd: keep_freed_memory not in
    force)."""
    info = _mallinfo2()
    if info is None:
        return 0
    libc = _glibc()
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start, held = info.arena, []
    try:
        for _ in range((info.fordblks + nbytes) // block + 2):  # blocks from free memory, then from the top
            size = heap_bytes()
            if size - start >= nbytes:
                break
            address = libc.malloc(block)
            if not address:
                break
            held.append(address)
            if heap_bytes() > size:  # carved from the top: fault it in (a free block found may have been trimmed)
                ctypes.memset(address, 0, block)
    finally:
        grown = heap_bytes() - start
        for address in held:
            libc.free(address)
    return grown
