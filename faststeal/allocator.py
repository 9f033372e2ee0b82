"""Keep freed memory in the process during CPU training, instead of handing it back to the kernel.

A training step allocates and frees the same few megabyte-sized activation buffers every iteration. glibc's
malloc serves blocks that large with fresh mmap()s, or trims them off the heap when freed, so every step
faults its buffers in again page by page and the kernel zeroes each page: 4,203 page faults per step of the
64x64 fast thief on two threads (tens of millions per 20-minute run). Raising the two thresholds below keeps
those blocks in the heap for reuse: 115 faults per step, 1.04x the images per second (``bench/allocator.py``,
docs/results/speed.md). The cost is that the process holds on to memory it freed, up to ``limit``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1     # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30      # blocks under this size come from the heap; this much freed memory may stay with us

_kept = False


def keep_freed_memory(limit: int = KEEP_BYTES) -> bool:
    """Ask glibc to serve blocks below ``limit`` from its heap and not to trim it below ``limit`` free bytes.

    Process-wide and lasting; a second call does nothing. Returns whether the setting is in force (False off
    Linux or without glibc, e.g. musl, where malloc has no such knobs and nothing is changed)."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _kept = bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
    return _kept
