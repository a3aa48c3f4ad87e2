"""Reusing the unchanged videos of the shard a stage item wrote last time.

A feature stage item (one dataset shard) computes every video of its shard. When it reruns because one
video was added, the other videos' results are already in the previous shard: :class:`PreviousShard`
opens it *before* the new shard replaces it (the new one is written to a temporary and renamed, so the
old file stays whole and readable until then) and :meth:`ShardWriter.copy_video` copies a video's group
as stored, compressed chunks and attributes, without inflating them (about 2 ms per 5-frame video).

A video is reused only when all of these hold, so that the result equals a from-scratch run:

* the file header is the same: every file attribute the new shard gets (the ``<kind>_params`` record,
  params hash, package version, ``code_digest`` of the ``pipeline`` sources, encoder or checkpoint
  provenance, dataset, source shard) equals the previous shard's (``num_videos`` aside);
* the video's input identity is the same: for an extracted video its ``input_digest`` (the manifest row
  as written, :func:`pipeline.shards.identity.input_digest`), for an audio or proposals video its
  ``source_digest`` (the extracted video's ``content_digest``);
* its stored digests are consistent (one per array, and the content digest over them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.atomic import DiskFullError, ensure_free_space
from pipeline.shards.attributes import AttributeView, from_attr, to_attr
from pipeline.shards.errors import ShardError
from pipeline.shards.file_digest import file_digest_mismatch
from pipeline.shards.identity import ARRAY_DIGESTS, verify_array
from pipeline.shards.located import FileStamp
from pipeline.shards.reader import ShardReader
from pipeline.shards.video_writer import STORED_DIGEST, stored_digest, stored_digests_consistent

VARYING_FILE_ATTRS = ("num_videos",)  # written at close; differs whenever the video list does


def header_difference(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The file attributes (names) that differ between a previous shard and the one being written."""
    old = {k: v for k, v in previous.items() if k not in VARYING_FILE_ATTRS}
    new = {k: from_attr(to_attr(v)) for k, v in current.items() if k not in VARYING_FILE_ATTRS}
    return sorted(
        k for k in old.keys() | new.keys() if old.get(k, None) != new.get(k, None) or (k in old) != (k in new)
    )


class PreviousShard:
    """The previous version of the shard at ``path``, if it can lend videos to one with ``file_attrs``.

    ``with PreviousShard(path, writer.file_attrs) as previous:`` then ``previous.matches(id, key, value)``
    and ``previous.copy(writer, id)``. ``reason`` says why nothing is reused ("" when videos may be)."""

    def __init__(self, path: str | Path, file_attrs: dict[str, Any], enabled: bool = True) -> None:
        self.path = Path(path)
        self.file_attrs = file_attrs
        self.reader: ShardReader | None = None
        self.reason = "" if enabled else "reuse turned off"
        self.enabled = enabled
        self.reused = 0
        # video id -> its attributes as read by matches_all, for copy (and warnings) to use without reading again
        self._accepted: dict[str, AttributeView] = {}

    def __enter__(self) -> PreviousShard:
        if not self.enabled:
            return self
        if not self.path.is_file():
            self.reason = "no previous shard"
            return self
        try:
            self.reader = ShardReader(self.path)
            differs = header_difference(self.reader.file_attrs(), self.file_attrs)
            # Copies are at most the previous file's size: one free-space check for all of them.
            ensure_free_space(self.path, self.path.stat().st_size)
        except DiskFullError:
            self.close()
            raise
        except (ShardError, OSError) as error:
            differs, self.reason = [], f"previous shard unreadable ({error})"
        if differs:
            self.reason = f"previous shard made with other {', '.join(differs[:4])}"
        if self.reason:
            self.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._accepted.clear()
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def trusted_index(self) -> tuple[dict[str, dict[str, Any]] | None, str]:
        """(the previous shard's index, "") when the file this reader has open hashes to the digest recorded
        beside it (:mod:`pipeline.shards.file_digest`): its bytes are as written, so its index says what
        its videos hold and their stored digests hold. Else (None, why not): check video by video."""
        if self.reader is None:
            return None, self.reason
        stamp = self.reader.stamp()
        why = file_digest_mismatch(self.path)
        if not why and _path_stamp(self.path) != stamp:
            why = f"{self.path.name} changed while it was read"
        index = None if why else self.reader.index()
        if not why and index is None:
            why = "previous shard has no index (written by an earlier version)"
        return index, why

    def index_agrees(self, video_ids: Iterable[str], keys: Iterable[str]) -> bool:
        """Whether the previous shard's index lists ``video_ids`` with the attributes ``keys`` that each
        video's group holds (read per video: the slow path's check before a digest is recorded)."""
        index = self.reader.index() if self.reader is not None else None
        if index is None:
            return False
        keys = list(keys)
        for video_id in video_ids:
            entry = index.get(video_id, {})
            stored = self.reader.video_attrs(video_id, keys)
            if stored != {key: entry[key] for key in keys if key in entry}:
                return False
        return True

    def matches(self, video_id: str, key: str, expected: Any) -> bool:
        """Whether the previous shard holds ``video_id`` made from the same input (its attribute ``key``
        equals ``expected``) with consistent stored digests."""
        return self.matches_all(video_id, {key: expected})

    def matches_all(self, video_id: str, expected: Mapping[str, Any]) -> bool:
        """:meth:`matches` for a video whose input is several attributes: each one (none empty) must equal
        the stored one."""
        if self.reader is None or not all(expected.values()) or not self.reader.has(video_id):
            return False
        group = self.reader.group(video_id)
        stored = AttributeView(group.attrs)
        if any(stored.get(key) != value for key, value in expected.items()):
            return False
        try:
            stored_digests_consistent(group, f"{self.path}: video {video_id!r}", stored)
        except ShardError:
            return False
        self._accepted[video_id] = stored
        return True

    def _attributes(self, video_id: str) -> AttributeView:
        """The attributes of ``video_id``: those :meth:`matches_all` read, else a fresh view."""
        assert self.reader is not None
        view = self._accepted.get(video_id)
        return view if view is not None else AttributeView(self.reader.group(video_id).attrs)

    def stored_intact(self, video_id: str) -> bool:
        """Whether the arrays of ``video_id`` (accepted by :meth:`matches`) are stored as they were written:
        by their stored digest where the stage recorded one (:meth:`ShardWriter.seal_video`: the stored
        bytes are read, not inflated), else by :meth:`arrays_intact`. A copy moves compressed chunks as
        they are, so bytes flipped on disk would otherwise travel on unseen."""
        assert self.reader is not None
        recorded = self._attributes(video_id).get(STORED_DIGEST)
        if recorded is None:
            return self.arrays_intact(video_id)
        try:
            return recorded == stored_digest(self.reader.group(video_id))
        except (ShardError, OSError, ValueError):
            return False

    def arrays_intact(self, video_id: str) -> bool:
        """Whether every array of ``video_id`` (accepted by :meth:`matches`) reads back, inflated, with the
        digest stored with it (about 3 ms of CPU per 5-frame 224x224 maskige video: inflating and hashing)."""
        assert self.reader is not None
        attrs = self.reader.video_attrs(video_id, [ARRAY_DIGESTS])
        try:
            return all(
                not verify_array(self.reader.read(video_id, key), attrs, key) for key in self.reader.keys(video_id)
            )
        except (ShardError, OSError, ValueError):
            return False

    def copy(self, writer: Any, video_id: str) -> list[str]:
        """Copy ``video_id`` (accepted by :meth:`matches`) into ``writer`` (a :class:`ShardWriter`); returns
        the warnings recorded with it (its ``warnings`` attribute, if any)."""
        assert self.reader is not None
        attrs = self._attributes(video_id)
        writer.copy_video(self.reader, video_id, checked=True, attrs=attrs)
        self._accepted.pop(video_id, None)
        self.reused += 1
        return list(attrs.get("warnings") or [])

    def warnings(self, video_id: str) -> list[str]:
        """The warnings recorded with ``video_id`` (its ``warnings`` attribute, if any)."""
        assert self.reader is not None
        return list(self._attributes(video_id).get("warnings") or [])

    def summary(self, total: int) -> str:
        if self.reused or not self.reason:
            return f"{self.reused} of {total} videos reused from the previous shard"
        return f"0 of {total} videos reused ({self.reason})"


def _path_stamp(path: Path) -> FileStamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class InOrder:
    """Puts reused videos at their place in ``order`` among the computed ones: call :meth:`before` with
    each computed video id (they arrive in ``order``), then :meth:`finish`."""

    def __init__(self, order: Iterable[str], reused: set[str], copy: Callable[[str], Any]) -> None:
        self._pending = iter(list(order))
        self._reused, self._copy = reused, copy

    def before(self, video_id: str) -> None:
        for pending in self._pending:
            if pending == video_id:
                return
            if pending in self._reused:
                self._copy(pending)

    def finish(self) -> None:
        for pending in self._pending:
            if pending in self._reused:
                self._copy(pending)
