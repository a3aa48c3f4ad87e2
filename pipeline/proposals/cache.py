"""Per-video proposals -> maskige, with a content-addressed cache of finished videos.

A video's result depends only on (its frames, the backend, the checkpoint file, every proposal
setting, the maskige encoding). The cache key hashes exactly those, so a rerun of a shard
(e.g. after one video was added to the manifest) reuses every video already done and can never
serve a result computed with other frames, weights or settings.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.hashing import sha256_of_arrays
from pipeline.proposals.backends import ProposalBackend
from pipeline.proposals.maskige import encode_maskige

# Bump when the encoding or the generator changes behaviour: old cache entries then miss.
MASKIGE_FORMAT_VERSION = 1
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass
class VideoProposals:
    """maskige uint8 [T,H,W,3]; mask_counts int32 [T] (masks K per frame); dropped int32 [T]
    (masks beyond the 149-label palette, see maskige.py)."""

    maskige: np.ndarray
    mask_counts: np.ndarray
    dropped: np.ndarray


def check_frames(frames: np.ndarray, where: str = "frames") -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 [T,H,W,3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"{where}: empty frames array {list(frames.shape)}")
    return frames


def propose_video(frames: np.ndarray, backend: ProposalBackend, progress: bool = False) -> VideoProposals:
    """Run the backend on every frame [T,H,W,3] and encode each frame's masks as a maskige."""
    from tqdm.auto import tqdm

    frames = check_frames(frames)
    maskiges, counts, dropped = [], [], []
    for frame in tqdm(frames, desc="proposals", unit="frame", disable=not progress):
        proposals = backend.propose(np.ascontiguousarray(frame))
        maskige, n_dropped = encode_maskige(proposals.masks, size_hw=frame.shape[:2])
        maskiges.append(maskige)
        counts.append(proposals.masks.shape[0])
        dropped.append(n_dropped)
    return VideoProposals(np.stack(maskiges), np.array(counts, np.int32), np.array(dropped, np.int32))


def video_content_hash(frames: np.ndarray) -> str:
    """sha256 of the frames array bytes (with shape and dtype)."""
    digest = hashlib.sha256(f"{frames.dtype}{list(frames.shape)}".encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


def cache_key(content_hash: str, backend: str, checkpoint_sha256: str, settings: dict[str, Any]) -> str:
    """Content address of one video's result: every input that can change it."""
    payload = {
        "format": MASKIGE_FORMAT_VERSION,
        "frames": content_hash,
        "backend": backend,
        "checkpoint_sha256": checkpoint_sha256,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def arrays_sha256(result: VideoProposals) -> str:
    """sha256 of a result's three arrays (dtype, shape and bytes each): written with a cache entry and
    checked when it is read, so an entry edited on disk is never served."""
    return sha256_of_arrays(result.maskige, result.mask_counts, result.dropped)


def entry_problem(result: VideoProposals, frames_shape: tuple[int, ...]) -> str:
    """Why ``result`` cannot be the proposals of frames of ``frames_shape`` [T,H,W,3], or "" when it can."""
    T = frames_shape[0]
    if result.maskige.dtype != np.uint8 or result.maskige.shape != tuple(frames_shape):
        return f"maskige is {result.maskige.dtype} {list(result.maskige.shape)}, expected uint8 {list(frames_shape)}"
    for name, array in (("mask_counts", result.mask_counts), ("dropped", result.dropped)):
        if array.dtype != np.int32 or array.shape != (T,):
            return f"{name} is {array.dtype} {list(array.shape)}, expected int32 [{T}]"
        if (array < 0).any():
            return f"{name} holds negative values"
    if (result.dropped > result.mask_counts).any():
        return "more masks dropped than proposed"
    return ""


class ProposalCache:
    """Folder of ``<key[:2]>/<key>.npz`` files, each written to a temporary name and renamed, holding the
    key and the sha256 of its arrays. An entry is served only when both match and its arrays have the
    dtype, shape and ranges of a result for the frames asked about; otherwise it is recomputed (with a
    warning naming the entry) and overwritten."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not _HEX_KEY.fullmatch(key):  # the key is the only thing that names a file under root
            raise ValueError(f"not a proposals cache key: {key!r}")
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, frames_shape: tuple[int, ...] | None = None) -> VideoProposals | None:
        """The entry of ``key`` if intact (and, given ``frames_shape``, shaped for those frames), else None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as stored:
                if str(stored["key"]) != key:
                    return None
                if "arrays_sha256" not in stored.files:
                    return None  # an entry of an earlier version: recomputed once, quietly
                recorded = str(stored["arrays_sha256"])
                result = VideoProposals(stored["maskige"], stored["mask_counts"], stored["dropped"])
        except Exception:  # unreadable entry (truncated disk, foreign file): recompute and overwrite
            warnings.warn(f"{path}: unreadable proposals cache entry; recomputed", stacklevel=2)
            return None
        problem = "its arrays do not match the hash written with them" if arrays_sha256(result) != recorded else ""
        problem = problem or (entry_problem(result, frames_shape) if frames_shape is not None else "")
        if problem:
            warnings.warn(f"{path}: proposals cache entry refused ({problem}); recomputed", stacklevel=2)
            return None
        return result

    def put(self, key: str, result: VideoProposals) -> None:
        with atomic_path(self.path(key), suffix=".npz") as tmp:  # savez adds .npz to names without it
            np.savez_compressed(
                tmp,
                key=np.array(key),
                maskige=result.maskige,
                mask_counts=result.mask_counts,
                dropped=result.dropped,
                arrays_sha256=np.array(arrays_sha256(result)),
            )


def cached_propose_video(
    frames: np.ndarray, backend: ProposalBackend, settings: dict[str, Any], cache: ProposalCache | None
) -> tuple[VideoProposals, bool]:
    """(result, served_from_cache). ``settings``: ``ProposalParams.model_settings()``."""
    frames = check_frames(frames)
    if cache is None:
        return propose_video(frames, backend), False
    key = cache_key(video_content_hash(frames), backend.name, backend.checkpoint_sha256, settings)
    hit = cache.get(key, frames.shape)
    if hit is not None:
        return hit, True
    result = propose_video(frames, backend)
    cache.put(key, result)
    return result, False
