"""Allocator tuning: for training loops with small batches, and for long streaming inference.

With batch sizes of a few samples, every step frees and re-allocates gradient and activation buffers
of a few MB.  glibc returns such blocks to the kernel (they are mmapped, or trimmed from the heap),
so each step page-faults them back in: measured here, ~270 minor faults per step and ~30% of the step
time for a 500-unit head.  Raising the mmap and trim thresholds keeps freed memory in the process for
reuse.  Process-wide, harmless elsewhere, and a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
_TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MB for reuse. True if the settings were applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim_freed_memory() -> bool:
    """Return the free pages of the heap to the kernel (glibc ``malloc_trim``), for long streaming jobs.

    glibc raises its mmap threshold as large blocks are freed and then serves them from the heap,
    which fragments and keeps growing: predict-tiles grew by ~120 MB between 81 and 729 tiles without
    trimming (scripts/bench_tiles.py).  A no-op returning False without glibc."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False
