"""What a shard's arrays are, as digests, so that shards made from one another can be checked to belong
together without reading their arrays.

Every video a :class:`~pipeline.shards.ShardWriter` writes carries ``array_digests`` (array key -> the
sha256 of its dtype, shape and bytes) and ``content_digest`` (one sha256 over those). A feature shard
made from an extraction shard (audio, proposals) copies the extracted video's ``content_digest`` into
its own video's ``source_digest``: a reader compares two attributes per video to know that the
maskiges and embeddings it pairs with the frames were made from exactly those frames, audio and
ground truth (a re-extraction with another frame size, a swapped or stale group). Hashing costs about
1 ms per 5-frame 224x224 video at write time; checking costs two attribute reads per video.

Digests are computed as the arrays are written (:class:`ArrayHasher`, window by window for a long
video) and equal :func:`array_digest` of the whole array. For reuse (:mod:`pipeline.shards.reuse`), a
video also records what it was made from (``input_digest``: the manifest row of an extracted video),
and a shard records the code that wrote it (``code_digest``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.hashing import sha256_of_arrays, sha256_of_tree

ARRAY_DIGESTS = "array_digests"  # video attribute: {array key: digest}
CONTENT_DIGEST = "content_digest"  # video attribute: digest over the video's array digests
SOURCE_DIGEST = "source_digest"  # video attribute of a derived shard: the source video's content_digest
INPUT_DIGEST = "input_digest"  # video attribute of an extracted video: digest of its manifest row
CODE_DIGEST = "code_digest"  # file attribute: digest of the pipeline package's source files


def array_digest(array: np.ndarray) -> str:
    """sha256 (hex) of an array's dtype, shape and bytes in C order."""
    return sha256_of_arrays(array)


class ArrayHasher:
    """:func:`array_digest` of an array of known ``shape`` and ``dtype``, fed in order along axis 0
    (``update(block)`` with blocks of rows), so that a long video is hashed one window at a time."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.dtype, self.shape = np.dtype(dtype), tuple(int(n) for n in shape)
        self._sha = hashlib.sha256(f"{self.dtype.str}{list(self.shape)}".encode())

    def update(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        self._sha.update(block.reshape(-1).view(np.uint8))

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def input_digest(record: Mapping[str, Any]) -> str:
    """sha256 of a record (a manifest row as a mapping of its columns) as canonical JSON."""
    return hashlib.sha256(json.dumps(dict(record), sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the path and bytes of every ``.py`` file of the ``pipeline`` package: any change to the
    code that computes features makes the shards it wrote before unreusable (conservative on purpose)."""
    return sha256_of_tree(Path(__file__).resolve().parents[1], "*.py")


def content_digest(array_digests: Mapping[str, str]) -> str:
    """One digest for a video's arrays (order of the keys does not matter)."""
    return hashlib.sha256(json.dumps(dict(array_digests), sort_keys=True).encode()).hexdigest()


def source_mismatch(source_attrs: Mapping, derived_attrs: Mapping) -> str:
    """Why a derived shard's video (its attributes) was not made from the source video (its attributes),
    or "" when its ``source_digest`` is the source's ``content_digest``."""
    made_from, source = derived_attrs.get(SOURCE_DIGEST), source_attrs.get(CONTENT_DIGEST)
    if not source:
        return "extracted by an earlier version: no content digest"
    if not made_from:
        return "written by an earlier version: no source digest"
    if made_from != source:
        return f"made from other data: source digest {made_from[:12]}, extract has {source[:12]}"
    return ""


def verify_array(array: np.ndarray, attrs: Mapping, key: str) -> str:
    """Why ``array`` (read back as ``key``) differs from the digest written with it, or "" when it matches
    (or when the shard recorded none for it)."""
    recorded = (attrs.get(ARRAY_DIGESTS) or {}).get(key)
    if recorded and recorded != array_digest(array):
        return f"{key} does not match the digest written with it (corrupt shard)"
    return ""
