"""Reading shards: :class:`ShardReader` opens one file with h5py and reads arrays through the one fast
path of :mod:`pipeline.shards.located` (plain ``pread`` + inflation of the chunks whose file offsets
:meth:`ShardReader.locate` records), falling back to h5py for layouts that path cannot describe."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5o, h5z

from pipeline.shards.attributes import AttributeView, from_attr
from pipeline.shards.errors import ShardError
from pipeline.shards.located import ArrayLocation, FileStamp, frame_range, read_located
from pipeline.shards.paths import group_name, video_id_of


class ShardReader:
    """Read-only access to one shard. Open it in the process that uses it (never across fork)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ShardError(f"{self.path}: shard not found (has its stage run?)")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise ShardError(f"{self.path}: not a readable HDF5 shard ({exc})") from exc
        self._videos = self._h5["videos"] if "videos" in self._h5 else None
        self._ids: list[str] | None = None
        self._stamp: FileStamp | None = None
        self._userblock_size: int | None = None

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None  # type: ignore[assignment]

    def video_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = [] if self._videos is None else [video_id_of(n) for n in self._videos.keys()]
        return list(self._ids)

    def has(self, video_id: str) -> bool:
        return self._videos is not None and group_name(video_id) in self._videos

    def _group(self, video_id: str) -> h5py.Group:
        try:
            if self._videos is not None:
                return self._videos[group_name(video_id)]
        except KeyError:
            pass
        raise ShardError(f"{self.path}: no video {video_id!r}")

    def group(self, video_id: str) -> h5py.Group:
        """The video's HDF5 group, for :meth:`pipeline.shards.ShardWriter.copy_video` (read-only use)."""
        return self._group(video_id)

    def _dataset_id(self, video_id: str, key: str) -> h5d.DatasetID:
        # The low-level open takes ~20 us, h5py's group[...] ~50 us and a "key in group" check as much
        # again: the loader opens five arrays per clip.
        try:
            found = h5o.open(self._videos.id, self._path(video_id, key)) if self._videos is not None else None
        except KeyError:
            found = None
        if isinstance(found, h5d.DatasetID):
            return found
        group = self._group(video_id)
        raise ShardError(f"{self.path}: video {video_id!r} has no {key!r} (has {list(group.keys())})")

    @staticmethod
    def _path(video_id: str, key: str) -> bytes:
        return f"{group_name(video_id)}/{key}".encode()

    def keys(self, video_id: str) -> list[str]:
        return list(self._group(video_id).keys())

    def has_array(self, video_id: str, key: str) -> bool:
        """Whether video ``video_id`` has an array ``key`` (False for an unknown video too)."""
        links = self._videos.id.links if self._videos is not None else None
        return (
            links is not None
            and links.exists(group_name(video_id).encode())
            and links.exists(self._path(video_id, key))
        )

    def read(self, video_id: str, key: str, index: int | slice | None = None) -> np.ndarray:
        """The whole array (``index`` None), one frame (int) or frames (slice) of ``key``: through the located
        fast path (:func:`pipeline.shards.located.read_located`) where the layout allows, else through h5py."""
        location = self.locate(video_id, key)
        frames = frame_range(location.shape[0], index) if location.shape else None
        if location.direct and frames is not None:
            array = read_located(self._h5.id.get_vfd_handle(), location, None if index is None else frames)
            return array[0] if index is not None and not isinstance(index, slice) else array
        dataset = h5py.Dataset(self._dataset_id(video_id, key))
        return dataset[()] if index is None else dataset[index]

    def iter_windows(self, video_id: str, key: str, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, array[start : start + rows])`` for each window of ``rows`` rows of array ``key``, in
        order: memory holds one window, whatever the array's length. The array is located once (its
        chunk offsets), each window read through the located fast path (h5py for other layouts)."""
        if rows < 1:
            raise ValueError(f"window of {rows} rows: must be >= 1")
        location = self.locate(video_id, key)
        if not location.shape:
            raise ShardError(f"{self.path}: video {video_id!r} {key!r} is a scalar: no rows to window")
        for start in range(0, location.shape[0], rows):
            frames = range(start, min(start + rows, location.shape[0]))
            if location.direct:
                yield start, read_located(self._h5.id.get_vfd_handle(), location, frames)
            else:
                yield start, h5py.Dataset(self._dataset_id(video_id, key))[frames.start : frames.stop]

    def read_rows(self, video_id: str, key: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of array ``key`` through h5py, which reads only the chunks they lie in:
        a window of a long 1-D array (a video's audio) without the index lists :meth:`read` builds."""
        return h5py.Dataset(self._dataset_id(video_id, key))[start:stop]

    def dtype(self, video_id: str, key: str) -> np.dtype:
        return self._dataset_id(video_id, key).dtype

    def shape(self, video_id: str, key: str) -> tuple[int, ...]:
        return tuple(self._dataset_id(video_id, key).shape)

    def _userblock(self) -> int:
        if self._userblock_size is None:
            self._userblock_size = self._h5.id.get_create_plist().get_userblock()
        return self._userblock_size

    def stamp(self) -> FileStamp:
        """The identity of the file this reader has open (not of whatever the path names now)."""
        return FileStamp.of_file(self._h5.id.get_vfd_handle())

    def locate(self, video_id: str, key: str) -> ArrayLocation:
        """Where array ``key`` of ``video_id`` lies in this file, for :class:`ArrayReader` to read it later (in
        any process) without HDF5: the file offsets of its contiguous bytes or of each of its chunks when the
        layout allows plain reads (see :class:`ArrayLocation`), else a record that sends the read to h5py.
        Raises :class:`ShardError` for a missing video or array, as :meth:`read` does."""
        dataset_id = self._dataset_id(video_id, key)
        shape, dtype = tuple(dataset_id.shape), dataset_id.dtype
        if self._stamp is None:
            self._stamp = self.stamp()
        base = ArrayLocation(str(self.path.absolute()), self._stamp, video_id, key, shape, dtype)
        plain = dtype.kind in "biuf" and dtype.isnative and len(shape) >= 1 and 0 not in shape
        # File addresses in HDF5 are relative to the end of the user block: with none (ShardWriter never
        # writes one) they are byte offsets in the file.
        if not plain or self._userblock() != 0:
            return base
        plist = dataset_id.get_create_plist()
        nbytes = dtype.itemsize * math.prod(shape)
        layout = plist.get_layout()
        if layout == h5d.CONTIGUOUS:
            offset = dataset_id.get_offset()
            if offset is None or dataset_id.get_storage_size() != nbytes:
                return base  # never written: h5py gives the fill value
            return replace(
                base,
                chunk_shape=shape,
                chunks=((offset, nbytes, 0, (0,) * len(shape)),),
                span=(offset, offset + nbytes),
            )
        if layout != h5d.CHUNKED:
            return base  # compact: the bytes live in the object header
        filters = plist.get_nfilters()
        if filters > 1 or (filters == 1 and plist.get_filter(0)[0] != h5z.FILTER_DEFLATE):
            return base
        chunk_shape = tuple(plist.get_chunk())
        infos: list[Any] = []
        if hasattr(dataset_id, "chunk_iter"):  # one call for all chunks (HDF5 >= 1.12.3 / 1.14)
            dataset_id.chunk_iter(infos.append)
        else:  # pragma: no cover - older HDF5
            infos = [dataset_id.get_chunk_info(i) for i in range(dataset_id.get_num_chunks())]
        if len(infos) != math.prod(-(-s // c) for s, c in zip(shape, chunk_shape)):
            return base  # some chunks never written: h5py gives the fill value there
        # Bit 0 of a chunk's filter mask set: the (only) deflate filter was skipped, the chunk is stored as is.
        chunks = [
            (info.byte_offset, info.size, int(filters == 1 and not info.filter_mask & 1), tuple(info.chunk_offset))
            for info in infos
        ]
        by_offset = sorted(chunks)
        adjacent = all(a[0] + a[1] == b[0] for a, b in zip(by_offset, by_offset[1:]))
        span = (by_offset[0][0], by_offset[-1][0] + by_offset[-1][1]) if adjacent else None
        return replace(base, chunk_shape=chunk_shape, chunks=tuple(chunks), span=span)

    def video_attrs(self, video_id: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The video's attributes (only ``keys``, those present, when given: reading a few attributes of
        thousands of videos is what indexing a shard costs)."""
        attrs = self._group(video_id).attrs
        if keys is None:
            return {k: from_attr(v) for k, v in attrs.items()}
        return AttributeView(attrs).pick(keys)

    def file_attrs(self) -> dict[str, Any]:
        return {k: from_attr(v) for k, v in self._h5.attrs.items()}

    def index(self) -> dict[str, dict[str, Any]] | None:
        """Video id -> the attributes :mod:`pipeline.shards.index` lists (and ``shapes``), in order, read in
        one go; None for a shard without a readable index that lists exactly its videos (one written
        before indexes, or damaged): callers then read per video (:meth:`video_attrs`)."""
        from pipeline.shards.index import INDEX, decode_index

        try:
            entries = decode_index(self._h5[INDEX][()]) if INDEX in self._h5 else None
        except (ValueError, OSError, TypeError):
            return None
        return entries if entries is not None and list(entries) == self.video_ids() else None


def read_arrays(path: str | Path, video_id: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Convenience: open, read ``keys`` of one video, close."""
    with ShardReader(path) as reader:
        return {k: reader.read(video_id, k) for k in keys}


class ArrayReader:
    """Reads :class:`ArrayLocation` records: direct ones with ``os.pread`` (one read per array when its
    chunks lie back to back) and ISA-L inflation (zlib when ``isal`` is not installed), the others with
    :meth:`ShardReader.read`. Keeps a file descriptor (and a ShardReader where needed) per file, opened on
    first use in the reading process and reopened after fork (pid check): nothing opened by a parent is
    used by a child. Refuses a file whose identity differs from the one the location recorded."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._fds: dict[str, int] = {}
        self._readers: dict[str, ShardReader] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"open_files": "not pickled"}  # never travel (a non-empty state, so __setstate__ runs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown or a half-built object: nothing to report
            pass

    def __enter__(self) -> ArrayReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close what this process opened (a parent's files, seen after fork, are left alone)."""
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
            for reader in self._readers.values():
                reader.close()
        self._fds, self._readers = {}, {}

    def _forked(self) -> None:
        if self._pid != os.getpid():
            self._fds, self._readers = {}, {}  # the parent's: never used here, never closed from here
            self._pid = os.getpid()

    def _fd(self, location: ArrayLocation) -> int:
        fd = self._fds.get(location.path)
        if fd is None:
            try:
                fd = os.open(location.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise ShardError(f"{location.path}: cannot open the shard ({exc})") from exc
            if FileStamp.of_file(fd) != location.stamp:
                os.close(fd)
                raise ShardError(
                    f"{location.path}: the shard changed after its arrays were located (rewritten by "
                    "a stage?); build the dataset again"
                )
            self._fds[location.path] = fd
        return fd

    def read(self, location: ArrayLocation) -> np.ndarray:
        """The whole array ``location`` describes, as a new writable numpy array."""
        self._forked()
        if location.chunks is None:
            reader = self._readers.get(location.path)
            if reader is None:
                reader = self._readers[location.path] = ShardReader(location.path)
                if reader.stamp() != location.stamp:
                    reader.close()
                    del self._readers[location.path]
                    raise ShardError(
                        f"{location.path}: the shard changed after its arrays were located (rewritten "
                        "by a stage?); build the dataset again"
                    )
            return reader.read(location.video_id, location.key)
        return read_located(self._fd(location), location)
