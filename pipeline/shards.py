"""Every HDF5 read and write of the project (nothing else imports h5py).

Layout: ``{data_root}/{dataset}/{kind}/shard-N.h5`` where ``kind`` is the producing stage
(``extract``, ``audio``, ``proposals``). One group per video under ``/videos``, named by the
percent-encoded video id (ids may contain ``/``); the id itself is the group's ``video_id``
attribute. Arrays with 3 or more dimensions are chunked one frame per chunk and gzip-compressed,
so reading one frame decompresses one frame.

Reading: such per-frame deflate chunks are read raw (``read_direct_chunk``) and inflated with
Intel ISA-L (``isal``), about twice as fast as the zlib inside HDF5 on the same standard streams,
with byte-identical results. Every other layout, and every read when ``isal`` is not installed,
goes through h5py's normal read. The files themselves are plain gzip HDF5, readable by any h5py.

Repeated reads (the training loader): :meth:`ShardReader.locate` records once where an array's bytes
lie in the file (file offsets of its contiguous block or of each deflate chunk, a few numbers and no
handle, so the record can cross fork and pickle), and :class:`ArrayReader` reads such records later
with plain ``pread`` calls and ISA-L (or zlib) inflation, without any HDF5 call per read. A record
carries the file's identity (device, inode, size, mtime); reading it from a file that has since been
rewritten is refused. Layouts the record cannot describe (other filters, unwritten chunks, compact
storage, non-native or non-numeric types) are read through h5py by the same :class:`ArrayReader`.

Writing: through :func:`pipeline.atomic.atomic_path` (a random, exclusively created temporary name
beside the shard, locked while written), read back, then renamed into place only when the writer
closes without error; a crash leaves the previous file (or none).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import h5py
import numpy as np
from h5py import h5d, h5o, h5s, h5z

from pipeline import __version__
from pipeline.atomic import atomic_path

try:  # optional: without it every read takes h5py's (zlib) path, same arrays
    from isal.isal_zlib import decompress as _isal_decompress
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - depends on the environment
    _isal_decompress, _IsalError = None, Exception

GZIP_LEVEL = 4  # level 4 is within a few % of 9 in size on frames and several times faster


def shard_name(shard: int) -> str:
    return f"shard-{shard}"


def shard_file(data_root: str | Path, dataset: str, kind: str, shard: int) -> Path:
    return Path(data_root) / dataset / kind / f"{shard_name(shard)}.h5"


def failures_file(shard_path: str | Path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f"{shard_path.stem}.failures.csv")


def _group_name(video_id: str) -> str:
    return quote(video_id, safe="")


def _to_attr(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=str)


def _from_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value[:1] in "[{" :
        try:
            return json.loads(value)
        except ValueError:
            return value
    if value == "null":
        return None
    return value


class ShardError(RuntimeError):
    """A shard file is missing, unreadable or lacks what was asked for."""


class ShardWriter:
    """Write one shard atomically: ``with ShardWriter(path, kind=..., params_hash=...) as w: ...``."""

    def __init__(self, path: str | Path, *, kind: str, params_hash: str, attrs: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.tmp: Path | None = None
        self._publish = contextlib.ExitStack()
        self.kind = kind
        self.file_attrs = {"kind": kind, "params_hash": params_hash, "package_version": __version__,
                           **(attrs or {})}
        self._h5: h5py.File | None = None
        self.count = 0

    def __enter__(self) -> "ShardWriter":
        self.tmp = self._publish.enter_context(atomic_path(self.path))
        # track_order keeps videos in write order (manifest order).
        self._h5 = h5py.File(self.tmp, "w", track_order=True)
        for key, value in self.file_attrs.items():
            self._h5.attrs[key] = _to_attr(value)
        self._videos = self._h5.create_group("videos", track_order=True)
        return self

    def write_video(self, video_id: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
        assert self._h5 is not None, "use ShardWriter as a context manager"
        name = _group_name(video_id)
        if name in self._videos:
            raise ShardError(f"{self.path}: video id {video_id!r} written twice")
        group = self._videos.create_group(name)
        group.attrs["video_id"] = video_id
        for key, value in (attrs or {}).items():
            group.attrs[key] = _to_attr(value)
        for key, array in arrays.items():
            array = np.asarray(array)
            if array.ndim >= 3 and array.shape[0] > 0:
                group.create_dataset(key, data=array, chunks=(1, *array.shape[1:]), compression="gzip", track_times=False,
                                     compression_opts=GZIP_LEVEL, shuffle=False)
            elif array.ndim >= 1 and array.size > 4096:
                group.create_dataset(key, data=array, compression="gzip", compression_opts=GZIP_LEVEL, track_times=False)
            else:
                group.create_dataset(key, data=array, track_times=False)
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._h5 is not None
        try:
            self._h5.attrs["num_videos"] = self.count
        finally:
            self._h5.close()
            self._h5 = None
        if exc_type is None:
            self._check_complete()
        self._publish.__exit__(exc_type, exc, tb)  # rename into place on success, delete on error

    def _check_complete(self) -> None:
        """Read the finished temporary back before publishing it: a file that does not open, or lacks
        videos it wrote, is never renamed into place."""
        try:
            with h5py.File(self.tmp, "r") as check:
                written = len(check["videos"]) if "videos" in check else 0
        except OSError as exc:
            self._publish.__exit__(ShardError, None, None)
            raise ShardError(f"{self.path}: the written shard does not read back ({exc})") from None
        if written != self.count:
            self._publish.__exit__(ShardError, None, None)
            raise ShardError(f"{self.path}: {written} of {self.count} videos read back; not published")


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

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None  # type: ignore[assignment]

    def video_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = [] if self._videos is None else [unquote(n) for n in self._videos.keys()]
        return list(self._ids)

    def has(self, video_id: str) -> bool:
        return self._videos is not None and _group_name(video_id) in self._videos

    def _group(self, video_id: str) -> h5py.Group:
        try:
            if self._videos is not None:
                return self._videos[_group_name(video_id)]
        except KeyError:
            pass
        raise ShardError(f"{self.path}: no video {video_id!r}")

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
        return f"{_group_name(video_id)}/{key}".encode()

    def keys(self, video_id: str) -> list[str]:
        return list(self._group(video_id).keys())

    def has_array(self, video_id: str, key: str) -> bool:
        """Whether video ``video_id`` has an array ``key`` (False for an unknown video too)."""
        links = self._videos.id.links if self._videos is not None else None
        return links is not None and links.exists(_group_name(video_id).encode()) and links.exists(self._path(video_id, key))

    def read(self, video_id: str, key: str, index: int | slice | None = None) -> np.ndarray:
        """The whole array (``index`` None), one frame (int) or frames (slice) of ``key``."""
        dataset_id = self._dataset_id(video_id, key)
        array = _read_quickly(dataset_id, index)
        if array is None:
            dataset = h5py.Dataset(dataset_id)
            return dataset[()] if index is None else dataset[index]
        return array

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
            return replace(base, chunk_shape=shape, chunks=((offset, nbytes, 0, (0,) * len(shape)),),
                           span=(offset, offset + nbytes))
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
        chunks = [(info.byte_offset, info.size, int(filters == 1 and not info.filter_mask & 1), tuple(info.chunk_offset))
                  for info in infos]
        by_offset = sorted(chunks)
        adjacent = all(a[0] + a[1] == b[0] for a, b in zip(by_offset, by_offset[1:]))
        span = (by_offset[0][0], by_offset[-1][0] + by_offset[-1][1]) if adjacent else None
        return replace(base, chunk_shape=chunk_shape, chunks=tuple(chunks), span=span)

    def video_attrs(self, video_id: str) -> dict[str, Any]:
        return {k: _from_attr(v) for k, v in self._group(video_id).attrs.items()}

    def file_attrs(self) -> dict[str, Any]:
        return {k: _from_attr(v) for k, v in self._h5.attrs.items()}


def _read_quickly(dataset_id: h5d.DatasetID, index: int | slice | None) -> np.ndarray | None:
    """``dataset[index]`` for the common cases, without h5py's high-level selection machinery (which costs
    ~0.1-0.2 ms a read, a lot next to a clip's five small reads); None leaves the read to h5py.

    Per-frame deflate chunks (see :func:`_per_frame_deflate`) are inflated with ISA-L when ``isal`` is
    installed; other whole-array reads of plain number arrays go to HDF5 directly (H5Dread, the call
    h5py's own read ends in, applying the same filters)."""
    shape, dtype = dataset_id.shape, dataset_id.dtype
    plain = dtype.kind in "biuf" and dtype.isnative and len(shape) >= 1 and 0 not in shape
    if not plain:
        return None
    if _isal_decompress is not None and len(shape) >= 2 and _per_frame_deflate(dataset_id, shape):
        frames = _frame_range(shape[0], index)
        array = _inflate_frames(dataset_id, shape, dtype, frames) if frames is not None else None
        if array is not None:
            return array[0] if index is not None and not isinstance(index, slice) else array
    if index is not None:
        return None
    out = np.empty(shape, dtype)
    dataset_id.read(h5s.ALL, h5s.ALL, out)
    return out


def _per_frame_deflate(dataset_id: h5d.DatasetID, shape: tuple[int, ...]) -> bool:
    """True for the layout ShardWriter gives arrays with ndim >= 3: one whole frame per chunk
    (``chunks == (1, *shape[1:])``), deflate as the only filter, every chunk written. Only then is a raw
    chunk exactly a zlib stream of one frame (or, with filter mask bit 0 set, the frame itself)."""
    plist = dataset_id.get_create_plist()
    if plist.get_layout() != h5d.CHUNKED or plist.get_chunk() != (1, *shape[1:]):
        return False
    # Deflate as the one and only filter is ``compression == "gzip"`` with no shuffle, fletcher32,
    # scale-offset or plugin filter (those would be further entries of the same filter pipeline).
    return (plist.get_nfilters() == 1 and plist.get_filter(0)[0] == h5z.FILTER_DEFLATE
            and dataset_id.get_num_chunks() == shape[0])


def _frame_range(count: int, index: int | slice | None) -> range | None:
    """Frame numbers ``index`` selects among ``count``, or None for anything left to h5py (and to its
    error messages): out-of-range ints, negative or zero steps, other index types."""
    if index is None:
        return range(count)
    if isinstance(index, slice):
        return range(*index.indices(count)) if index.step is None or index.step > 0 else None
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool) and -count <= index < count:
        return range(int(index) % count, int(index) % count + 1)
    return None


def _inflate_frames(dataset_id: h5d.DatasetID, shape: tuple[int, ...], dtype: np.dtype,
                    frames: range) -> np.ndarray | None:
    """[len(frames), *shape[1:]] of a dataset laid out as :func:`_per_frame_deflate` checks, each chunk
    read raw and inflated with ISA-L: the same bytes HDF5's deflate filter would produce. None when a
    chunk does not inflate to one frame: the caller then reads through h5py, which reports a damaged
    chunk the way every other read does (OSError)."""
    frame_shape = shape[1:]
    out = np.empty((len(frames), *frame_shape), dtype)
    frame_bytes = out.itemsize * int(np.prod(frame_shape))
    corner = (0,) * len(frame_shape)
    for slot, frame in enumerate(frames):
        filter_mask, raw = dataset_id.read_direct_chunk((frame, *corner))
        try:
            # Bit 0 set: HDF5 skipped the (only) deflate filter for this chunk, which is stored as is.
            data = raw if filter_mask & 1 else _isal_decompress(raw)
        except _IsalError:
            return None
        if len(data) != frame_bytes:
            return None
        out[slot] = np.frombuffer(data, dtype).reshape(frame_shape)
    return out


@dataclass(frozen=True)
class FileStamp:
    """Which file a path named when arrays were located: a rewrite (a new file renamed into place, or the
    same file changed) changes the inode or the size or the modification time."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of_file(cls, fd: int) -> "FileStamp":
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

    def __enter__(self) -> "ArrayReader":
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
                raise ShardError(f"{location.path}: the shard changed after its arrays were located (rewritten by "
                                 "a stage?); build the dataset again")
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
                    raise ShardError(f"{location.path}: the shard changed after its arrays were located (rewritten "
                                     "by a stage?); build the dataset again")
            return reader.read(location.video_id, location.key)
        return _read_located(self._fd(location), location)


def _pread(fd: int, location: ArrayLocation, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ShardError(f"{location.path}: video {location.video_id!r} {location.key!r}: file ends inside the array "
                         f"(bytes {offset}..{offset + size}); truncated?")
    return data


def _read_located(fd: int, location: ArrayLocation) -> np.ndarray:
    shape, dtype, chunk_shape = location.shape, location.dtype, location.chunk_shape
    assert location.chunks is not None and chunk_shape is not None
    out = np.empty(shape, dtype)
    if chunk_shape == shape and len(location.chunks) == 1 and not location.chunks[0][2]:
        offset, size = location.chunks[0][:2]  # contiguous: straight into the array, no copy
        if size != out.nbytes or os.preadv(fd, [memoryview(out).cast("B")], offset) != size:
            raise ShardError(f"{location.path}: video {location.video_id!r} {location.key!r}: short read at {offset}; "
                             "truncated?")
        return out
    inflate = _isal_decompress if _isal_decompress is not None else zlib.decompress
    chunk_bytes = dtype.itemsize * math.prod(chunk_shape)
    rows = chunk_shape[1:] == shape[1:]  # chunks of whole rows (ShardWriter's per-frame chunks)
    start = location.span[0] if location.span is not None else 0
    block = memoryview(_pread(fd, location, start, location.span[1] - start)) if location.span is not None else None
    for offset, size, compressed, corner in location.chunks:
        raw = block[offset - start:offset - start + size] if block is not None else _pread(fd, location, offset, size)
        try:
            data = inflate(raw) if compressed else raw
        except (_IsalError, zlib.error) as exc:
            raise ShardError(f"{location.path}: video {location.video_id!r} {location.key!r}: damaged chunk at byte "
                             f"{offset} ({exc})") from exc
        if len(data) != chunk_bytes:
            raise ShardError(f"{location.path}: video {location.video_id!r} {location.key!r}: chunk at byte {offset} "
                             f"holds {len(data)} bytes, expected {chunk_bytes}")
        chunk = np.frombuffer(data, dtype).reshape(chunk_shape)
        if rows:
            first = corner[0]
            count = min(chunk_shape[0], shape[0] - first)
            out[first:first + count] = chunk[:count]
        else:  # edge chunks are stored whole: keep the part inside the array
            region = tuple(slice(c, min(c + n, s)) for c, n, s in zip(corner, chunk_shape, shape))
            out[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def read_arrays(path: str | Path, video_id: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Convenience: open, read ``keys`` of one video, close."""
    with ShardReader(path) as reader:
        return {k: reader.read(video_id, k) for k in keys}
