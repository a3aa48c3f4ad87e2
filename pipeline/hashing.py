"""sha256 of files and arrays (provenance of weights, identities of source videos, integrity of cached
and sharded arrays): the one implementation of file hashing, which tests/test_one_sha256.py keeps here.
One-shot digests of values already in memory (a video id, canonical params JSON) stay where they are."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

BLOCK = 1 << 20  # bytes read at a time


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_arrays(*arrays) -> str:
    """Hex sha256 of numpy arrays in order, each as its dtype (``dtype.str``), shape and C-order bytes."""
    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{list(array.shape)}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def sha256_of_tree(root: str | Path, pattern: str = "*.py") -> str:
    """Hex sha256 over the relative path and bytes of every file under ``root`` matching ``pattern``, in
    sorted order: the identity of a body of code."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def sha256_of_digests(digests: list[str]) -> str:
    """Hex sha256 of hex digests in order: the identity of a source made of several files (frames + wav)."""
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def sha256_of_records(records: Iterable[bytes]) -> str:
    """Hex sha256 of byte records in order, consumed as they come: the identity of a listing too long to build
    in memory first (a source tree's file stats, :mod:`pipeline.tree_stamp`). Each record must end itself
    (a fixed number of NUL-terminated fields), so that no two listings feed the same bytes."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(record)
    return digest.hexdigest()


def sha256_of_named_digests(named: list[tuple[str, str]]) -> str:
    """Hex sha256 of (name, hex digest) pairs in order: the identity of a set of files whose names matter
    too (a file renamed, added or dropped changes it). Names never hold a NUL, so the encoding is unambiguous."""
    return sha256_of_records(f"{name}\0{value}\n".encode() for name, value in named)


def sha256_of_blocks(blocks: list[bytes]) -> str:
    """Hex sha256 of byte blocks in order, each preceded by its length (block boundaries count): the
    identity of data as a file stores it (a video's compressed chunks)."""
    return sha256_of_records(part for block in blocks for part in (len(block).to_bytes(8, "little"), block))


@lru_cache(maxsize=64)
def _memoised(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of_file(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised on (absolute path, size, modification time): weights files are hashed
    once per process however many times their provenance is recorded."""
    path = Path(path).absolute()
    stat = path.stat()
    return _memoised(str(path), stat.st_size, stat.st_mtime_ns)
