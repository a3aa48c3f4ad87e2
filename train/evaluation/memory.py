"""Keeping ``avs evaluate``'s resident memory down: glibc's heap, not Python, holds most of what a
scoring pass leaves behind, and :func:`release_free_heap` hands its free pages back after each pass.

Not done, measured: fixing glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``) keeps large tensors
in their own mappings and lowers the peak a little more, but every such tensor is then a fresh mapping
to zero-fill. On the 1/10 AVSBench MS3 test split (evaluate, five audio conditions): no fixed threshold
20-21 s wall, 4 s system CPU, 840-870 MB; 16 MiB 26 s, 10 s, 823 MB; 4 MiB 38 s, 26 s, 783 MB; 1 MiB
47-56 s, 35 s, 770 MB. Elsewhere than on glibc the trim does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - musl and others lack them: treated as no glibc
    except (OSError, AttributeError):
        return None
    return libc


def release_free_heap() -> None:
    """Collect Python's garbage, then return the heap's free pages to the system (glibc ``malloc_trim``)."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
