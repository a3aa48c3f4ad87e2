"""One video of a shard written in blocks of rows (a long video one window at a time), with its digests
computed as the blocks go by: :class:`VideoWriter`, made by :meth:`pipeline.shards.ShardWriter.begin_video`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from pipeline.atomic import ensure_free_space
from pipeline.hashing import sha256_of_blocks
from pipeline.shards.attributes import AttributeView, from_attr, to_attr
from pipeline.shards.errors import ShardError
from pipeline.shards.identity import ARRAY_DIGESTS, CONTENT_DIGEST, ArrayHasher, array_digest, content_digest

GZIP_LEVEL = 4  # level 4 is within a few % of 9 in size on frames and several times faster


class OpenShard(Protocol):
    """What a video writer needs of the shard writer that made it (ShardWriter; named here so that this
    module does not import the writer, which imports it)."""

    path: Path
    count: int
    _videos: Any  # the open /videos group

    def indexed(self, video_id: str, attrs: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
        """Record a finished video in the shard's index."""


READ_BACK_ROWS = 1 << 20  # rows read at a time when a trimmed array is hashed again


def create_array(
    group: h5py.Group, key: str, shape: tuple[int, ...], dtype: np.dtype, trimmable: bool = False
) -> h5py.Dataset:
    """An empty dataset in the shard layout: arrays with ndim >= 3 chunked one frame per chunk and gzip;
    other arrays of more than 4096 values gzip with h5py's chunk guess; small ones contiguous. A
    ``trimmable`` array is chunked whatever its size (only chunked datasets can shrink)."""
    size = int(np.prod(shape)) if shape else 1
    if len(shape) >= 3 and shape[0] > 0:
        return group.create_dataset(
            key,
            shape=shape,
            dtype=dtype,
            chunks=(1, *shape[1:]),
            compression="gzip",
            track_times=False,
            compression_opts=GZIP_LEVEL,
            shuffle=False,
        )
    if len(shape) >= 1 and (size > 4096 or (trimmable and size > 0)):
        maxshape = shape if trimmable else None
        return group.create_dataset(
            key,
            shape=shape,
            dtype=dtype,
            maxshape=maxshape,
            compression="gzip",
            compression_opts=GZIP_LEVEL,
            track_times=False,
        )
    return group.create_dataset(key, shape=shape, dtype=dtype, track_times=False)


class VideoWriter:
    """Writes one video's arrays block by block, in order along axis 0: ``write(key, start, block)`` with
    ``start`` the next unwritten row. Leaving the ``with`` block checks every array was written whole,
    then writes ``attrs`` (the caller may add to them until then) and the digests; an exception instead
    removes the video's group, so a shard never holds part of a video (HDF5 keeps the freed space)."""

    def __init__(
        self,
        shard: OpenShard,
        video_id: str,
        group: h5py.Group,
        shapes: dict[str, tuple[int, ...]],
        dtypes: dict[str, Any],
        attrs: dict[str, Any],
        trimmable: tuple[str, ...] = (),
    ) -> None:
        unknown = set(trimmable) - set(shapes)
        if set(shapes) != set(dtypes) or unknown:
            raise ValueError(f"{video_id!r}: shapes, dtypes and trimmable keys differ ({sorted(unknown)})")
        self.shard, self.video_id, self.group, self.attrs = shard, video_id, group, attrs
        self.content_digest = ""
        self._shapes = {key: tuple(int(n) for n in shape) for key, shape in shapes.items()}
        self._datasets = {
            key: create_array(group, key, self._shapes[key], np.dtype(dtypes[key]), key in trimmable) for key in shapes
        }
        self._hashers = {key: ArrayHasher(self._shapes[key], dtypes[key]) for key in shapes}
        self._written = dict.fromkeys(shapes, 0)
        self._scalars: dict[str, str] = {}  # 0-d arrays: their digest, taken whole

    def __enter__(self) -> VideoWriter:
        return self

    def write(self, key: str, start: int, block: np.ndarray) -> None:
        """Rows ``[start, start + len(block))`` of array ``key`` (the whole value for a 0-d array)."""
        dataset, shape = self._datasets[key], self._shapes[key]
        block = np.asarray(block, dtype=dataset.dtype)
        if not shape:
            dataset[()] = block
            self._scalars[key], self._written[key] = array_digest(block), 0
            return
        if start != self._written[key] or block.shape[1:] != shape[1:] or start + len(block) > shape[0]:
            raise ShardError(
                f"{self.shard.path}: video {self.video_id!r} {key}: block {block.shape} at row {start} does not "
                f"continue the {shape} array at row {self._written[key]}"
            )
        if block.size:
            ensure_free_space(self.shard.path, block.nbytes + (64 << 10))
            dataset[start : start + len(block)] = block
        self._hashers[key].update(block)
        self._written[key] += len(block)

    def trim(self, key: str, length: int) -> None:
        """End array ``key`` (declared trimmable, written whole) at ``length`` rows; its digest is taken
        again from the stored rows, read back a block at a time."""
        dataset, shape = self._datasets[key], self._shapes[key]
        if dataset.maxshape is None or dataset.chunks is None or self._written[key] != shape[0] or length > shape[0]:
            raise ShardError(f"{self.shard.path}: video {self.video_id!r} {key} cannot be trimmed to {length}")
        dataset.resize((length, *shape[1:]))
        self._shapes[key] = (length, *shape[1:])
        hasher = ArrayHasher(self._shapes[key], dataset.dtype)
        for row in range(0, length, READ_BACK_ROWS):
            hasher.update(dataset[row : min(length, row + READ_BACK_ROWS)])
        self._hashers[key], self._written[key] = hasher, length

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            del self.shard._videos[self.group.name.rsplit("/", 1)[-1]]
            return
        rows = {k: shape[0] for k, shape in self._shapes.items() if shape}  # 0-d arrays have no rows
        short = {k: f"{self._written[k]}/{n}" for k, n in rows.items() if self._written[k] != n}
        if short or set(self._scalars) != {k for k, s in self._shapes.items() if not s}:
            del self.shard._videos[self.group.name.rsplit("/", 1)[-1]]
            raise ShardError(f"{self.shard.path}: video {self.video_id!r} not written whole (rows: {short})")
        digests = {key: self._scalars.get(key) or self._hashers[key].hexdigest() for key in self._shapes}
        self.content_digest = content_digest(digests)
        identity = {ARRAY_DIGESTS: digests, CONTENT_DIGEST: self.content_digest}
        self.group.attrs["video_id"] = self.video_id
        for key, value in {**self.attrs, **identity}.items():
            self.group.attrs[key] = to_attr(value)
        self.shard.indexed(self.video_id, {**self.attrs, **identity}, self._shapes)
        self.shard.count += 1


def stored_digests_consistent(group: h5py.Group, where: str, attrs: AttributeView | None = None) -> str:
    """The content digest of a stored video group, after checking that it has one digest per array and
    that its content digest is the digest over them (a group from an older version has none). ``attrs``:
    the group's attributes where the caller has them in an :class:`AttributeView` already."""
    attrs = AttributeView(group.attrs) if attrs is None else attrs
    digests = attrs.get(ARRAY_DIGESTS)
    stored = attrs.get(CONTENT_DIGEST, "")
    if not isinstance(digests, dict) or not stored:
        raise ShardError(f"{where}: no array digests (written by an earlier version)")
    if set(digests) != set(group.keys()) or content_digest(digests) != stored:
        raise ShardError(f"{where}: stored digests do not match its arrays (corrupt shard)")
    return str(stored)


STORED_DIGEST = "stored_digest"  # video attribute, where a stage records it (ShardWriter.seal_video)


def stored_digest(group: h5py.Group) -> str:
    """sha256 over a video's content digest and its arrays as the file stores them: each array's dtype,
    shape and layout, then its compressed chunks in element order (never inflated) or the bytes of an
    unchunked array. An HDF5 object copy keeps all of them, so a copied video keeps its stored digest;
    checking it reads about 20 KB of a 5-frame 224x224 maskige video instead of inflating 750 KB."""
    blocks = [str(from_attr(group.attrs.get(CONTENT_DIGEST, ""))).encode()]
    for key in sorted(group.keys()):
        dataset = group[key]
        blocks.append(f"{key}\0{dataset.dtype.str}{dataset.shape}{dataset.chunks}{dataset.compression}".encode())
        if dataset.chunks is None:
            blocks.append(np.ascontiguousarray(dataset[()]).tobytes())
            continue
        store = dataset.id
        chunks = sorted(store.get_chunk_info(i).chunk_offset for i in range(store.get_num_chunks()))
        for chunk in chunks:
            filter_mask, stored = store.read_direct_chunk(chunk)
            blocks += [f"{chunk}{filter_mask}".encode(), stored]
    return sha256_of_blocks(blocks)
