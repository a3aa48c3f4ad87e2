"""Keeping ``avs evaluate``'s resident memory down: glibc's heap, not Python, holds most of what a
scoring pass leaves behind.

glibc serves an allocation above its mmap threshold with its own mapping, returned to the system when
freed; but the threshold rises to the largest block freed so far (up to 32 MB), so after the first
forward pass the activations of every later one come from the heap, and a heap keeps its freed pages.
A fixed threshold keeps large tensors in their own mappings, and :func:`release_free_heap` hands back
what the heap has freed. Measured on combo_mnv2's forward passes over the demo's 224x224 clips: peak RSS
787 MB by default, 709 MB at 1 MiB, 725 MB at 4 MiB, 698 MB at 256 KiB (but 1.8x slower: every tensor
from 256 KiB up is then a fresh mapping to zero-fill). Neither changes a result: they decide where
memory lives, not what it holds. Elsewhere than on glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1024 * 1024  # blocks from 1 MiB up get their own mapping (its pages go back when freed)


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - musl and others lack them: treated as no glibc
    except (OSError, AttributeError):
        return None
    return libc


def limit_heap_growth() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD_BYTES`` for this process; False where not glibc."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def release_free_heap() -> None:
    """Collect Python's garbage, then return the heap's free pages to the system (glibc ``malloc_trim``)."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
