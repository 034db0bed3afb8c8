"""Process-wide runtime setup, done once by the ``eossl`` command (and by benchmarks that measure it).

glibc returns every freed block larger than its mmap threshold (32 MB at most) to the system, so each new large
temporary tensor is faulted in again page by page: a (256, 13, 64, 64) batch of views is 54 MB, and the
augmentation pipeline spent as much system time on page faults as on arithmetic. Raising the mmap and trim
thresholds keeps freed memory in the process for reuse (peak memory stays resident).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def configure_allocator(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap/trim thresholds (Linux with glibc only). Returns True when applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    if not ok:
        log.debug("mallopt refused the allocator thresholds; keeping the defaults")
    _done = ok
    return ok
