"""Located arrays: the file offsets of an array's bytes, recorded once (:meth:`ShardReader.locate`) and read
later with plain ``pread`` calls and ISA-L (or zlib) inflation, in any process, without HDF5. This is the
one fast read path: :class:`ArrayReader` (the training loader) and :meth:`ShardReader.read` both use it."""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass

import numpy as np

from pipeline.shards.errors import ShardError

try:  # optional: without it inflation uses zlib, same bytes
    from isal.isal_zlib import decompress as _isal_decompress
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - depends on the environment
    _isal_decompress, _IsalError = None, Exception


@dataclass(frozen=True)
class FileStamp:
    """Which file a path named when arrays were located: a rewrite (a new file renamed into place, or the
    same file changed) changes the inode or the size or the modification time."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of_file(cls, fd: int) -> FileStamp:
        st = os.fstat(fd)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class ArrayLocation:
    """One array of one shard, as :meth:`ShardReader.locate` found it: plain data (no handle), so it can be
    made once in a parent process and read in DataLoader workers after fork.

    ``chunks`` (None: the layout needs HDF5, :class:`ArrayReader` reads the array through h5py) holds one
    ``(file offset, stored bytes, compressed, first element)`` per chunk of ``chunk_shape`` elements; a
    contiguous array is one uncompressed chunk of its whole shape. ``compressed`` chunks are zlib streams
    (HDF5's deflate filter), the others the chunk's raw bytes. ``span`` is the byte range of all chunks when
    they lie back to back in the file (as ShardWriter writes them), so that one read fetches them all."""

    path: str
    stamp: FileStamp
    video_id: str
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_shape: tuple[int, ...] | None = None
    chunks: tuple[tuple[int, int, int, tuple[int, ...]], ...] | None = None
    span: tuple[int, int] | None = None

    @property
    def direct(self) -> bool:
        """Whether :class:`ArrayReader` reads it with plain file reads (else through h5py)."""
        return self.chunks is not None


def _pread(fd: int, location: ArrayLocation, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ShardError(
            f"{location.path}: video {location.video_id!r} {location.key!r}: file ends inside the array "
            f"(bytes {offset}..{offset + size}); truncated?"
        )
    return data


def frame_range(count: int, index: int | slice | None) -> range | None:
    """Frame numbers ``index`` selects among ``count``, or None for anything left to h5py (and to its
    error messages): out-of-range ints, negative or zero steps, other index types."""
    if index is None:
        return range(count)
    if isinstance(index, slice):
        return range(*index.indices(count)) if index.step is None or index.step > 0 else None
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool) and -count <= index < count:
        return range(int(index) % count, int(index) % count + 1)
    return None


def read_located(fd: int, location: ArrayLocation, frames: range | None = None) -> np.ndarray:
    """The array ``location`` describes (``frames``: only those rows of the first axis, as a new array;
    with per-row chunks only their chunks are read), from the open file ``fd``."""
    shape, chunk_shape = location.shape, location.chunk_shape
    assert location.chunks is not None and chunk_shape is not None
    if frames is None:
        return _read_all(fd, location)
    if chunk_shape[1:] != shape[1:]:
        return _read_all(fd, location)[list(frames)]
    if not frames:
        return np.empty((0, *shape[1:]), location.dtype)
    wanted = set(frames)
    # Only the rows from the first to the last wanted one are allocated: a window of a long video costs
    # the window, not the video.
    low, high = min(frames), max(frames) + 1
    out = np.empty((high - low, *shape[1:]), location.dtype)
    for chunk in location.chunks:
        first = chunk[3][0]
        if wanted.intersection(range(first, first + chunk_shape[0])):
            _place_chunk(out, location, chunk, _pread(fd, location, chunk[0], chunk[1]), low)
    return out if frames == range(low, high) else out[[f - low for f in frames]]


def _read_all(fd: int, location: ArrayLocation) -> np.ndarray:
    shape, dtype, chunk_shape = location.shape, location.dtype, location.chunk_shape
    out = np.empty(shape, dtype)
    if chunk_shape == shape and len(location.chunks) == 1 and not location.chunks[0][2]:
        offset, size = location.chunks[0][:2]  # contiguous: straight into the array, no copy
        if size != out.nbytes or os.preadv(fd, [memoryview(out).cast("B")], offset) != size:
            raise ShardError(
                f"{location.path}: video {location.video_id!r} {location.key!r}: short read at {offset}; truncated?"
            )
        return out
    start = location.span[0] if location.span is not None else 0
    block = memoryview(_pread(fd, location, start, location.span[1] - start)) if location.span is not None else None
    for chunk in location.chunks:
        offset, size = chunk[:2]
        raw = block[offset - start : offset - start + size] if block is not None else _pread(fd, location, offset, size)
        _place_chunk(out, location, chunk, raw)
    return out


def _place_chunk(
    out: np.ndarray, location: ArrayLocation, chunk: tuple, raw: bytes | memoryview, first_row: int = 0
) -> None:
    """Inflate one chunk (when compressed) and copy the part of it inside the array into ``out``, which
    holds the array's rows from ``first_row`` on (the part of the chunk outside ``out`` is left out)."""
    offset, _, compressed, corner = chunk
    shape, dtype, chunk_shape = location.shape, location.dtype, location.chunk_shape
    inflate = _isal_decompress if _isal_decompress is not None else zlib.decompress
    try:
        data = inflate(raw) if compressed else raw
    except (_IsalError, zlib.error) as exc:
        raise ShardError(
            f"{location.path}: video {location.video_id!r} {location.key!r}: damaged chunk at byte {offset} ({exc})"
        ) from None
    chunk_bytes = dtype.itemsize * math.prod(chunk_shape)
    if len(data) != chunk_bytes:
        raise ShardError(
            f"{location.path}: video {location.video_id!r} {location.key!r}: chunk at byte {offset} "
            f"holds {len(data)} bytes, expected {chunk_bytes}"
        )
    block = np.frombuffer(data, dtype).reshape(chunk_shape)
    # edge chunks are stored whole: keep the part inside the array
    region = [slice(c, min(c + n, s)) for c, n, s in zip(corner, chunk_shape, shape)]
    inside = [slice(0, r.stop - r.start) for r in region]
    rows = slice(max(region[0].start, first_row), min(region[0].stop, first_row + out.shape[0]))
    if rows.start >= rows.stop:
        return
    inside[0] = slice(rows.start - corner[0], rows.stop - corner[0])
    region[0] = slice(rows.start - first_row, rows.stop - first_row)
    out[tuple(region)] = block[tuple(inside)]
