"""The index of a shard: one small dataset (``/_index``, JSON as uint8 bytes) listing each video in order
with the attributes a reuse check needs, so that deciding about a whole shard costs one read instead of a
few attribute reads per video. It is a dataset, not an attribute: attributes over 64 KB fail in HDF5's
default layout, and a shard of thousands of videos has a larger index.

Written by :class:`pipeline.shards.ShardWriter` at close (copied videos included), read by
:meth:`pipeline.shards.ShardReader.index`; shards written before it have none (callers read per video)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pipeline.shards.attributes import from_attr, to_attr
from pipeline.shards.identity import CONTENT_DIGEST, INPUT_DIGEST, SOURCE_DIGEST
from pipeline.shards.video_writer import STORED_DIGEST

INDEX = "_index"  # root dataset name (never a video group: those live under /videos)
INDEX_FORMAT = 1
SHAPES = "shapes"  # index entry key: {array key: shape}
# Video attributes every index lists when a video has them (a writer may add its own: ``index_keys``).
INDEX_KEYS = (CONTENT_DIGEST, SOURCE_DIGEST, INPUT_DIGEST, STORED_DIGEST, "task", "split", "warnings")


def index_entry(attrs: Mapping[str, Any], shapes: Mapping[str, Iterable[int]], keys: Iterable[str]) -> dict[str, Any]:
    """One video's entry: the ``keys`` it has among ``attrs``, as read back from the file (to_attr then
    from_attr: the entry equals what :meth:`ShardReader.video_attrs` returns), and its arrays' shapes."""
    entry = {key: from_attr(to_attr(attrs[key])) for key in keys if key in attrs}
    entry[SHAPES] = {key: [int(n) for n in shape] for key, shape in shapes.items()}
    return entry


def encode_index(entries: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """uint8 [N bytes] of the JSON of ``entries`` (video id -> entry, in write order)."""
    payload = {"format": INDEX_FORMAT, "videos": [[video_id, dict(entry)] for video_id, entry in entries.items()]}
    return np.frombuffer(json.dumps(payload, sort_keys=True, default=str).encode(), np.uint8)


def decode_index(raw: np.ndarray) -> dict[str, dict[str, Any]]:
    """Video id -> entry, in order, from :func:`encode_index`'s bytes; ValueError when they are not an index."""
    try:
        payload = json.loads(np.asarray(raw, np.uint8).tobytes().decode("utf-8"))
        if payload.get("format") != INDEX_FORMAT:
            raise ValueError(f"index format {payload.get('format')!r}, expected {INDEX_FORMAT}")
        entries = {str(video_id): dict(entry) for video_id, entry in payload["videos"]}
    except (AttributeError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a shard index ({exc})") from None
    if len(entries) != len(payload["videos"]):
        raise ValueError("not a shard index (a video id listed twice)")
    return entries
