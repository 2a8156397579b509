"""Memory a big handshake took goes back to the system: glibc's mmap threshold stays fixed."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

# In a fresh interpreter: free an 8 MiB block, then take 4 MiB and count mmapped blocks.
# glibc's dynamic threshold rises to 8 MiB at the free, so the 4 MiB come from the heap
# (and stay with the process once freed); with the threshold fixed they are mmapped.
PROBE = """
import ctypes, sys
from tlsendpoint.memory import fix_mmap_threshold
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(4 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 - glibc >= 2.33
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize(("mode", "mapped"), [("dynamic", 0), ("fixed", 1)])
def test_a_big_block_is_mapped_even_after_a_bigger_one_was_freed(mode: str, mapped: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout
    assert int(out) == mapped
