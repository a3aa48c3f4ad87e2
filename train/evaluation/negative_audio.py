"""Negative audio: does the model still segment when the clip's sounding object makes no sound?

AVSBench-Robust (Li et al., arXiv 2502.00358) shows that audio-visual segmentation models often
segment the visually salient object whatever the audio is. Here every test clip is scored again with
audio in which nothing in view sounds:

- ``silence``: the features of digital silence (all-zero int16 samples);
- ``noise``: the features of white Gaussian noise, RMS ``NOISE_RMS`` of full scale (-20 dBFS), drawn
  from ``evaluate.seed`` (the same noise for every clip of the same length);
- ``offscreen``: the audio features of another test video of the same dataset, split and length whose
  ``category`` differs (its sound source is not in this clip's frames), chosen by a seeded
  derangement (:func:`offscreen_donors`).

Shards hold precomputed features, not waveforms, so silence and noise are pushed through the very
front end and encoder that made the dataset's audio shards (its ``audio_params`` record, with the
encoder's provenance checked against the shard's), once per run, and cached in memory. Where that
encoder cannot be rebuilt (a VGGish checkpoint missing, a record of an older version, an encoder whose
provenance or width differs from the shard's), those two conditions are skipped with the reason.

The measures (:class:`ForegroundTally`) need no ground truth: the fraction of frames with any
predicted sounding pixel and the mean fraction of pixels predicted sounding. Under negative audio
every such pixel is a false positive, so 0 is best and 1 worst.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.media import AUDIO_RATE
from pipeline.shards import ShardReader, shard_file
from train.data import ClipDataset

NEGATIVE_CONDITIONS = ("silence", "noise", "offscreen")
NOISE_RMS = 0.1  # white noise at -20 dBFS: clearly audible, far from clipping
COLUMN_NAMES = {"silence": "pred., silence", "noise": "pred., noise", "offscreen": "pred., off-screen audio"}


def negative_waveform(kind: str, num_seconds: int, seed: int) -> np.ndarray:
    """int16 [num_seconds * AUDIO_RATE] mono: ``kind`` "silence" (zeros) or "noise" (seeded white noise)."""
    samples = num_seconds * AUDIO_RATE
    if kind == "silence":
        return np.zeros(samples, np.int16)
    if kind == "noise":
        noise = np.random.default_rng([seed, num_seconds]).normal(0.0, NOISE_RMS, samples)
        return np.round(np.clip(noise, -1.0, 1.0) * 32767).astype(np.int16)
    raise ValueError(f"no synthetic waveform for negative-audio condition {kind!r}")


class WaveformFeatures:
    """The model's audio input for a synthetic waveform, computed as the audio stage computed the shards'
    (``audio_key`` "embeddings": the encoder's [T,D]; "logmel": the VGGish front end's [T,96,64]);
    each (kind, T) computed once and cached."""

    def __init__(self, params: Any, audio_key: str, seed: int, encoder: Any | None = None) -> None:
        self.params, self.audio_key, self.seed, self.encoder = params, audio_key, seed, encoder
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, kind: str, num_seconds: int) -> np.ndarray:
        key = (kind, num_seconds)
        if key not in self._cache:
            self._cache[key] = self._compute(negative_waveform(kind, num_seconds, self.seed), num_seconds)
        return self._cache[key]

    def _compute(self, waveform: np.ndarray, num_seconds: int) -> np.ndarray:
        if self.audio_key == "logmel":
            from pipeline.audio.features import clip_mel_examples
            from pipeline.audio.logmel import VGGISH_LOG_OFFSET, log_mel

            mel, _ = clip_mel_examples(waveform, num_seconds)
            return log_mel(mel, VGGISH_LOG_OFFSET).astype(np.float32)
        from pipeline.audio.features import clip_features

        return clip_features([(waveform, num_seconds)], self.encoder)[0]["embeddings"]


def waveform_features_for(dataset: ClipDataset, seed: int) -> tuple[WaveformFeatures | None, str]:
    """(features maker, "") for the audio shards of ``dataset``, or (None, the reason in one line) when
    the front end and encoder that made them cannot be rebuilt as they were."""
    from pipeline.audio.features import get_encoder
    from pipeline.feature_record import read_record

    ref = dataset.clips[0]
    path = shard_file(dataset.source.data_root, ref.dataset, "audio", ref.shard)
    try:
        params = read_record("audio", dataset.feature_params().get("audio"), str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable record means: cannot rebuild, say why
        return None, f"audio record unusable ({exc})"
    if dataset.source.audio_key == "logmel":
        return WaveformFeatures(params, "logmel", seed), ""
    try:
        encoder = get_encoder(params)
    except Exception as exc:  # noqa: BLE001 - e.g. a VGGish checkpoint missing on this machine
        return None, f"audio encoder {params.encoder!r} cannot be rebuilt ({exc})"
    with ShardReader(path) as reader:
        recorded = reader.file_attrs()
        width = int(reader.read(ref.video_id, "embeddings").shape[-1])
    differing = sorted(k for k, v in encoder.provenance.items() if k in recorded and str(recorded[k]) != str(v))
    if differing:
        return None, f"{path}: encoder rebuilt here differs from the one recorded ({', '.join(differing)})"
    if encoder.dim != width:
        return None, f"{path}: embeddings are {width}-d, the rebuilt {params.encoder} encoder gives {encoder.dim}-d"
    return WaveformFeatures(params, "embeddings", seed, encoder), ""


def _audio_key(item: dict[str, Any]) -> str:
    return "audio" if "audio" in item else "logmel"


class ReplacedAudio(Dataset):
    """Clip i of ``base`` with its audio input replaced by ``features(kind, T)`` (silence or noise)."""

    def __init__(self, base: ClipDataset, features: WaveformFeatures, kind: str) -> None:
        self.base, self.features, self.kind = base, features, kind

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        key = _audio_key(item)
        item[key] = torch.from_numpy(self.features(self.kind, item[key].shape[0])).float()
        return item


def offscreen_donors(categories: Sequence[str], lengths: Sequence[int], seed: int) -> list[int | None]:
    """donors[i]: the clip whose audio clip i gets, never i itself, of the same length and, whenever the
    group allows, of a different category (None: no other clip of that length).

    Within each length group the clips are ordered by category (categories and ties in seeded random
    order) and rotated by the size of the largest category: when no category holds more than half of
    the group, no clip receives audio of its own category, and every clip's audio is used exactly once."""
    gen = np.random.default_rng(seed)
    donors: list[int | None] = [None] * len(categories)
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        groups.setdefault(length, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        names = sorted({categories[i] for i in members})
        rank = {names[j]: r for r, j in enumerate(gen.permutation(len(names)))}
        tie = {int(i): t for t, i in enumerate(gen.permutation(members))}
        ordered = sorted(members, key=lambda i: (rank[categories[i]], tie[i]))
        largest = max(sum(categories[i] == name for i in members) for name in names)
        shift = min(largest, len(ordered) - 1)
        for k, i in enumerate(ordered):
            donors[i] = ordered[(k + shift) % len(ordered)]
    return donors


def clip_categories(dataset: ClipDataset) -> list[str]:
    """The ``category`` each clip's extract shard records; a clip without one gets a name of its own
    (unknown category: it differs from every other)."""
    found = []
    for ref in dataset.clips:
        with ShardReader(shard_file(dataset.source.data_root, ref.dataset, "extract", ref.shard)) as reader:
            category = str(reader.video_attrs(ref.video_id).get("category") or "")
        found.append(category or f"?{ref.dataset}/{ref.video_id}")
    return found


class OffscreenAudio(Dataset):
    """Clip i of ``base`` with the audio input of clip ``donors[i]`` (:func:`offscreen_donors`); clips
    without a donor keep their own audio and are left out of the measures by the caller."""

    def __init__(self, base: ClipDataset, seed: int) -> None:
        self.base = base
        self.categories = clip_categories(base)
        self.donors = offscreen_donors(self.categories, [c.num_frames for c in base.clips], seed)

    @property
    def same_category(self) -> int:
        """Clips whose donor shares their category (a category holding more than half of a length group)."""
        return sum(d is not None and self.categories[d] == c for d, c in zip(self.donors, self.categories))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        donor = self.donors[index]
        if donor is not None:
            item[_audio_key(item)] = torch.from_numpy(self.base.read_arrays(donor)["audio"]).float()
        return item


class ForegroundTally:
    """Accumulates how much a model predicts as sounding: label maps [T,H,W] (label > 0 = sounding)."""

    def __init__(self) -> None:
        self.any_pixel: list[float] = []
        self.area: list[float] = []
        self.per_video: dict[Hashable, float] = {}

    def add(self, video_id: Hashable, labels: torch.Tensor) -> None:
        sounding = (labels > 0).flatten(1)
        any_pixel = sounding.any(1).float()
        area = sounding.float().mean(1)
        self.any_pixel += any_pixel.tolist()
        self.area += area.tolist()
        self.per_video[video_id] = float(area.mean())

    def compute(self) -> dict[str, Any]:
        """``frames``; ``pred_frame_fraction``: frames with any predicted sounding pixel / frames;
        ``pred_area_ratio``: predicted sounding pixels / pixels, averaged over frames."""
        frames = len(self.area)
        return {
            "frames": frames,
            "pred_frame_fraction": float(np.mean(self.any_pixel)) if frames else 0.0,
            "pred_area_ratio": float(np.mean(self.area)) if frames else 0.0,
        }
