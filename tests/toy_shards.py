"""Toy feature shards for tests and benchmarks: extract, audio and proposals shards of one dataset,
written with the real shard API, feature records and source digests, as the stages write them.

A :class:`ToyClip` holds one video's arrays; :func:`write_clip_shards` writes a list of them. Each
caller draws its own scene (tests/train/conftest.py, tests/train/test_report.py, benchmarks/gpu_check.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio.features import AudioParams
from pipeline.extraction import ExtractParams
from pipeline.feature_record import record_attrs
from pipeline.proposals.config import ProposalParams
from pipeline.shards import SOURCE_DIGEST, ShardWriter, shard_file

AUDIO_RATE = 16000
KINDS = ("extract", "audio", "proposals")


@dataclass
class ToyClip:
    """One video's arrays (T seconds, H x W frames, D-wide audio embeddings)."""

    video_id: str
    frames: np.ndarray  # uint8 [T,H,W,3]
    masks: np.ndarray  # uint8 [T,H,W] ground truth
    embeddings: np.ndarray  # float32 [T,D]
    split: str = "train"
    waveform: np.ndarray | None = None  # int16 [T*16000]; silence when None
    labelled: np.ndarray | None = None  # bool [T] (gt_valid); every frame when None
    maskige: np.ndarray | None = None  # uint8 [T,H,W,3]; the frames when None

    def extract_arrays(self) -> dict[str, np.ndarray]:
        seconds = len(self.frames)
        waveform = np.zeros(seconds * AUDIO_RATE, np.int16) if self.waveform is None else self.waveform
        labelled = np.ones(seconds, bool) if self.labelled is None else self.labelled
        return {"frames": self.frames, "audio": waveform, "gt_masks": self.masks, "gt_valid": labelled}

    def audio_arrays(self) -> dict[str, np.ndarray]:
        logmel = np.zeros((len(self.frames), 96, 64), np.float32)
        return {"embeddings": self.embeddings, "logmel": logmel}

    def proposal_arrays(self) -> dict[str, np.ndarray]:
        maskige = self.frames.copy() if self.maskige is None else self.maskige
        return {"maskige": maskige, "mask_counts": np.full(len(self.frames), 2, np.int32)}


def default_records(size: int) -> dict[str, dict[str, Any]]:
    """The feature records of each kind, as the stages write them for ``size`` x ``size`` frames."""
    params = {
        "extract": ExtractParams(frame_size=[size, size]),
        "audio": AudioParams(),
        "proposals": ProposalParams(preset="demo", cache_dir=""),
    }
    return {kind: record_attrs(kind, value) for kind, value in params.items()}


def write_clip_shards(
    root: Path,
    dataset: str,
    clips: Iterable[ToyClip],
    attrs: dict[str, dict[str, Any]],
    params_hash: str = "t",
) -> None:
    """Shard 0 of ``extract``, ``audio`` and ``proposals`` for ``dataset`` under ``root``; ``attrs``
    holds each kind's file attributes. Audio and proposals videos are bound to their extracted video."""
    writers = {
        kind: ShardWriter(shard_file(root, dataset, kind, 0), kind=kind, params_hash=params_hash, attrs=attrs.get(kind))
        for kind in KINDS
    }
    with writers["extract"] as extract, writers["audio"] as audio, writers["proposals"] as proposals:
        for clip in clips:
            seconds = len(clip.frames)
            digest = extract.write_video(
                clip.video_id, clip.extract_arrays(), {"split": clip.split, "num_seconds": seconds}
            )
            made_from = {SOURCE_DIGEST: digest}
            audio.write_video(clip.video_id, clip.audio_arrays(), made_from)
            proposals.write_video(clip.video_id, clip.proposal_arrays(), made_from)
