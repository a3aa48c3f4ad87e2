"""Writing one shard atomically (the only HDF5 writer of the project)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5o

from pipeline import __version__
from pipeline.atomic import atomic_path, ensure_free_space
from pipeline.shards.attributes import AttributeView, to_attr
from pipeline.shards.errors import ShardError
from pipeline.shards.identity import CODE_DIGEST, code_digest
from pipeline.shards.index import INDEX, INDEX_KEYS, encode_index, index_entry
from pipeline.shards.paths import group_name
from pipeline.shards.reader import ShardReader
from pipeline.shards.video_writer import STORED_DIGEST, VideoWriter, stored_digest, stored_digests_consistent


class ShardWriter:
    """Write one shard atomically: ``with ShardWriter(path, kind=..., params_hash=...) as w: ...``.

    At close it writes the shard's index (:mod:`pipeline.shards.index`): each video's attributes among
    :data:`~pipeline.shards.index.INDEX_KEYS` and ``index_keys`` (a stage's own identity attributes)."""

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str,
        params_hash: str,
        attrs: dict[str, Any] | None = None,
        index_keys: tuple[str, ...] = (),
    ) -> None:
        self.path = Path(path)
        self.tmp: Path | None = None
        self._publish = contextlib.ExitStack()
        self.kind = kind
        self.file_attrs = {
            "kind": kind,
            "params_hash": params_hash,
            "package_version": __version__,
            CODE_DIGEST: code_digest(),
            **(attrs or {}),
        }
        self._h5: h5py.File | None = None
        self.count = 0
        self.index_keys = tuple(dict.fromkeys(INDEX_KEYS + tuple(index_keys)))
        self._index: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> ShardWriter:
        self.tmp = self._publish.enter_context(atomic_path(self.path))
        # track_order keeps videos in write order (manifest order). No chunk cache (rdcc_nbytes=0): each
        # chunk reaches the disk inside create_dataset, so a failed write raises there. With a cache, HDF5
        # flushed chunks when h5py dropped the dataset object, where errors are only printed; writing on
        # into that broken file ended in a segfault (exit 139) on a full disk.
        self._h5 = h5py.File(self.tmp, "w", track_order=True, rdcc_nbytes=0)
        for key, value in self.file_attrs.items():
            self._h5.attrs[key] = to_attr(value)
        self._videos = self._h5.create_group("videos", track_order=True)
        self._index = {}
        return self

    def indexed(self, video_id: str, attrs: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
        """Record a finished video in the index (called by its :class:`VideoWriter`)."""
        self._index[video_id] = index_entry(attrs, shapes, self.index_keys)

    def write_video(self, video_id: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> str:
        """Write one video's arrays and attributes, with the digests of :mod:`pipeline.shards.identity`
        (``array_digests``, ``content_digest``); returns the content digest."""
        arrays = {key: np.asarray(array) for key, array in arrays.items()}
        shapes = {key: array.shape for key, array in arrays.items()}
        dtypes = {key: array.dtype for key, array in arrays.items()}
        with self.begin_video(video_id, shapes, dtypes, attrs) as video:
            for key, array in arrays.items():
                video.write(key, 0, array)
        return video.content_digest

    def begin_video(
        self,
        video_id: str,
        shapes: dict[str, tuple[int, ...]],
        dtypes: dict[str, Any],
        attrs: dict[str, Any] | None = None,
        trimmable: tuple[str, ...] = (),
    ) -> VideoWriter:
        """Start a video whose arrays are written in blocks of rows (``with writer.begin_video(...) as v:
        v.write(key, start, block)``): memory holds one block. ``trimmable`` keys may end shorter than
        declared (:meth:`VideoWriter.trim`). An exception inside the block removes the video's group."""
        assert self._h5 is not None, "use ShardWriter as a context manager"
        name = group_name(video_id)
        if name in self._videos:
            raise ShardError(f"{self.path}: video id {video_id!r} written twice")
        group = self._videos.create_group(name)
        return VideoWriter(self, video_id, group, shapes, dtypes, dict(attrs or {}), trimmable)

    def seal_video(self, video_id: str) -> None:
        """Record the written video's :func:`~pipeline.shards.video_writer.stored_digest`, so that a later
        run can check its stored bytes cheaply before reusing it (:meth:`PreviousShard.stored_intact`)."""
        assert self._h5 is not None, "use ShardWriter as a context manager"
        group = self._videos[group_name(video_id)]
        digest = group.attrs[STORED_DIGEST] = stored_digest(group)
        self._index[video_id][STORED_DIGEST] = digest

    def copy_video(
        self, reader: ShardReader, video_id: str, checked: bool = False, attrs: AttributeView | None = None
    ) -> None:
        """Copy one video of another shard as stored (HDF5 object copy: compressed chunks are copied
        without inflating them) with all its attributes. The group must carry consistent digests (one per
        array, and the content digest over them) and fit on the disk; ``checked``: the caller made both
        checks already (:class:`pipeline.shards.reuse.PreviousShard` does, once per shard for the space).
        ``attrs``: the source group's attributes where the caller has read them already."""
        assert self._h5 is not None, "use ShardWriter as a context manager"
        name = group_name(video_id)
        if name in self._videos:
            raise ShardError(f"{self.path}: video id {video_id!r} written twice")
        source = reader.group(video_id)
        attrs = AttributeView(source.attrs) if attrs is None else attrs
        if not checked:
            stored_digests_consistent(source, f"{reader.path}: video {video_id!r}", attrs)
            ensure_free_space(self.path, sum(source[key].id.get_storage_size() for key in source) + (64 << 10))
        source.file.copy(source, self._videos, name=name)
        # the index entry from the copied group itself (a few attribute reads, beside a copy of ~1 ms); its
        # arrays opened at the low level (h5py's group[key] costs twice as much)
        shapes = {key: h5o.open(source.id, key.encode()).shape for key in source}
        self._index[video_id] = index_entry(attrs.pick(self.index_keys), shapes, self.index_keys)
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._h5 is not None
        try:
            self._close(complete=exc_type is None)
            if exc_type is None:
                self._check_complete()
        except Exception as error:  # a failed close (disk full) or read-back: never published
            if not self._publish.__exit__(type(error), error, error.__traceback__):
                raise
            return
        self._publish.__exit__(exc_type, exc, tb)  # rename into place on success, delete on error

    def _close(self, complete: bool) -> None:
        """Close the temporary; the closing records (count, index) only when every write went through: after
        a failed write (disk full) more writes would only replace that error with HDF5's own."""
        try:
            if complete:
                self._h5.attrs["num_videos"] = self.count
                self._h5.create_dataset(INDEX, data=encode_index(self._index), track_times=False)
        finally:
            self._h5.close()
            self._h5 = None

    def _check_complete(self) -> None:
        """Read the finished temporary back before publishing it: a file that does not open, or lacks
        videos it wrote, is never renamed into place."""
        try:
            with h5py.File(self.tmp, "r") as check:
                written = len(check["videos"]) if "videos" in check else 0
                indexed = INDEX in check
        except OSError as exc:
            raise ShardError(f"{self.path}: the written shard does not read back ({exc})") from None
        if written != self.count or not indexed:
            raise ShardError(
                f"{self.path}: {written} of {self.count} videos read back"
                f"{'' if indexed else ', no index'}; not published"
            )
