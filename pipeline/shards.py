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

Writing: exactly one process writes a shard, to ``shard-N.h5.tmp-PID``, renamed into place
only when the writer closes without error; a crash leaves the previous file (or none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import h5py
import numpy as np
from h5py import h5d, h5o, h5s, h5z

from pipeline import __version__

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


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``path.tmp-PID`` files left by writers that were killed (their PID is gone)."""
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)  # raises if no such process: the writer is dead
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's process


class ShardError(RuntimeError):
    """A shard file is missing, unreadable or lacks what was asked for."""


class ShardWriter:
    """Write one shard atomically: ``with ShardWriter(path, kind=..., params_hash=...) as w: ...``."""

    def __init__(self, path: str | Path, *, kind: str, params_hash: str, attrs: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self.kind = kind
        self.file_attrs = {"kind": kind, "params_hash": params_hash, "package_version": __version__,
                           **(attrs or {})}
        self._h5: h5py.File | None = None
        self.count = 0

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.path)
        # track_order keeps videos in write order; libver pinned so identical inputs give identical layouts.
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
        self._h5.attrs["num_videos"] = self.count
        self._h5.close()
        self._h5 = None
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


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


def read_arrays(path: str | Path, video_id: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Convenience: open, read ``keys`` of one video, close."""
    with ShardReader(path) as reader:
        return {k: reader.read(video_id, k) for k in keys}
