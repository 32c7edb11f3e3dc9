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
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


_M_MMAP_MAX = -4


@functools.cache
def serve_large_blocks_from_heap() -> bool:
    """Ask glibc never to mmap: every block, however large, comes from the heap and is reused there.

    A CNN's largest activations (154 MB for MobileNetV2's first expanded layer at batch 32, 224 px)
    are above glibc's largest mmap threshold (32 MB), so each forward pass mapped them afresh and the
    kernel zeroed them page by page: ~1,700-2,200 page faults per forward, and ~3,300 in predict-tiles
    where reads reshuffle the heap between batches.  Served from the heap they are reused (median
    faults per forward 0 alone, 17 in predict-tiles, where the periodic trim returns some pages), and
    the model alone 85 -> 77 ms per 32-tile batch (2 cores), its warm-up shorter.  Memory stays
    bounded by :func:`trim_freed_memory` (``scripts/bench_tiles.py`` measures both).  Process-wide;
    True if applied, False where the C library is not glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


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
