"""Give memory freed after a big handshake back to the system (glibc's mmap threshold).

glibc serves an allocation of 128 KiB or more with its own ``mmap`` and unmaps it
when it is freed - but freeing such a block also *raises* the threshold to that
block's size (the dynamic threshold, up to 32 MiB on 64-bit systems), after
which blocks of that size come from the heap, and freed heap memory mostly stays
with the process.  One 16 MiB client chain (OpenSSL's message buffer, the parsed
certificate) is enough to raise it: measured with ``bench/hostile_handshakes.py``,
27 MiB stayed after 50 hostile peers had left, 6 MiB with the threshold fixed.
Setting ``M_MMAP_THRESHOLD`` explicitly turns the dynamic adjustment off
(mallopt(3)); 128 KiB is glibc's default starting value, so small allocations
behave as before.  There is no library for this: ctypes on the C library.

Other C libraries (musl's ``mallopt`` does nothing) keep their own behaviour.
"""

from __future__ import annotations

import ctypes

__all__ = ["MMAP_THRESHOLD", "fix_mmap_threshold"]

#: Allocations from this size on get their own mapping, returned when freed.
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # malloc.h


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at *threshold* octets; False if the C library would not."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.restype = ctypes.c_int
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
