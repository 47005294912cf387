"""Keep freed memory in the process (glibc): CPU forward passes allocate and free the same few-MB
activations batch after batch, and glibc's defaults hand them back to the kernel and take them again
as fresh zero-filled pages: ~680k page faults for the SmolLM2 scorer's 192 benchmark prompts,
under 800 with these thresholds (`benchmarks/scoring_profile.py`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

ENV = "SYCOPHANCY_KEEP_FREED_MEMORY"  # 0: leave the C allocator's settings alone
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks up to this come from the heap
TRIM_THRESHOLD = 1 << 30  # free heap kept before any is returned to the kernel

_done: list[bool] = []


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process, so activations freed after one batch
    serve the next; True when they are set (glibc, not opted out). Both are needed: a fixed trim
    threshold alone also freezes the mmap threshold at its 128 KB default, which is much slower."""
    if _done:
        return _done[0]
    _done.append(_set_thresholds())
    return _done[0]


def _set_thresholds() -> bool:
    """mallopt through ctypes, where the C library is glibc and the user has not opted out."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):
        return False
    if mmap != 1 or trim != 1:
        log.debug("mallopt refused the thresholds (mmap %s, trim %s)", mmap, trim)
        return False
    return True
