"""pin_glibc_allocator: freed blocks stay in the heap (checked with glibc's own counters, in a fresh interpreter)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from yolo_attn.profiling.allocator import pin_glibc_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "pin":
    assert pin_glibc_allocator()
size = 24 << 20
before = libc.mallinfo2().hblkhd
block = libc.malloc(size)
mmapped = libc.mallinfo2().hblkhd - before >= size
libc.free(block)
print(int(mmapped), int(libc.mallinfo2().fordblks >= size))
"""


def probe(mode: str) -> list[str]:
    run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return run.stdout.split()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and mallinfo2")
def test_pinned_allocator_keeps_freed_blocks_in_the_heap():
    assert probe("default") == ["1", "0"]  # glibc: a 24 MB block is mmapped, and unmapped when freed
    assert probe("pin") == ["0", "1"]  # pinned: served from the heap, and kept there after free
