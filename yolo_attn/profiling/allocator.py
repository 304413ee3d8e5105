"""Steady glibc allocation for micro-benchmarks: no memory handed back to the OS between timed calls.

glibc's malloc serves large blocks with ``mmap`` and trims the heap top once more than its trim threshold is free,
raising both thresholds as it goes. A feature map of a few MB freed by one pass is then often returned to the OS, and
the next pass that allocates it page-faults on every 4 KiB page: at yolov8n's P3 shape SE's broadcasting multiply
took 105 us per call with glibc's trimming and 47-68 us with pinned thresholds (``bench_blocks.py --profile SE@P3``,
three runs), and which pass pays it depends on the order of allocations, not on the block. Fixing both thresholds
keeps freed blocks in the heap, so the times measure computation, as they would under an allocator that keeps its
memory (jemalloc or tcmalloc, often preloaded for CPU inference).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3


def pin_glibc_allocator(threshold_bytes: int = 32 << 20) -> bool:
    """Keep freed blocks up to ``threshold_bytes`` in the heap (glibc ``mallopt``), for the rest of the process.

    The same as starting Python with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set. A no-op where the C
    library is not glibc.

    Args:
        threshold_bytes (int): Blocks below this size come from the heap, and up to this much free heap is kept;
            32 MiB (glibc's largest mmap threshold on 64-bit) covers every feature map of an n-scale model at 640 px.

    Returns:
        (bool): Whether glibc accepted both settings.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, TypeError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, threshold_bytes))
