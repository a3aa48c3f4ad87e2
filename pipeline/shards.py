"""Every HDF5 read and write of the project (nothing else imports h5py).

Layout: ``{data_root}/{dataset}/{kind}/shard-N.h5`` where ``kind`` is the producing stage
(``extract``, ``audio``, ``proposals``). One group per video under ``/videos``, named by the
percent-encoded video id (ids may contain ``/``); the id itself is the group's ``video_id``
attribute. Arrays with 3 or more dimensions are chunked one frame per chunk and gzip-compressed,
so reading one frame decompresses one frame.

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

from pipeline import __version__

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
        if not self.has(video_id):
            raise ShardError(f"{self.path}: no video {video_id!r}")
        return self._videos[_group_name(video_id)]

    def keys(self, video_id: str) -> list[str]:
        return list(self._group(video_id).keys())

    def read(self, video_id: str, key: str, index: int | slice | None = None) -> np.ndarray:
        group = self._group(video_id)
        if key not in group:
            raise ShardError(f"{self.path}: video {video_id!r} has no {key!r} (has {list(group.keys())})")
        dataset = group[key]
        return dataset[()] if index is None else dataset[index]

    def shape(self, video_id: str, key: str) -> tuple[int, ...]:
        return tuple(self._group(video_id)[key].shape)

    def video_attrs(self, video_id: str) -> dict[str, Any]:
        return {k: _from_attr(v) for k, v in self._group(video_id).attrs.items()}

    def file_attrs(self) -> dict[str, Any]:
        return {k: _from_attr(v) for k, v in self._h5.attrs.items()}


def read_arrays(path: str | Path, video_id: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Convenience: open, read ``keys`` of one video, close."""
    with ShardReader(path) as reader:
        return {k: reader.read(video_id, k) for k in keys}
