"""Clip datasets over the cached HDF5 shards, and the augmentation shared by frame, maskige and mask.

A sample is one video clip of T frames. Every array comes from the shards written by the
feature stages (``extract``: frames + ground truth, ``proposals``: maskiges, ``audio``: embeddings
or log-mel); nothing is recomputed here. Shards are opened lazily in the process that reads them
(each DataLoader worker gets its own h5py handles; a handle is never inherited across fork).

Which frames are supervised comes from the data (``gt_valid``): S4 train clips carry a label on
frame 1 only (semi-supervised), MS3 on all frames, AVSS where labels exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from pipeline.shards import ShardReader, shard_file

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
IGNORE_LABEL = 255


@dataclass(frozen=True)
class ClipRef:
    """Where one clip lives: dataset, shard and video id (and its T, for length-grouped batching)."""

    dataset: str
    shard: int
    video_id: str
    num_frames: int


@dataclass
class Augmentation:
    """Same random geometry for frame, maskige and mask (COMBO: resize shortest edge in a range,
    random crop, flip), colour jitter on the frame only. Randomness comes from a generator the
    caller seeds, so a sample's augmentation depends on (seed, epoch, index) only: reproducible
    with any number of DataLoader workers and across resumes."""

    size: tuple[int, int] = (224, 224)
    scale_range: tuple[float, float] = (0.5, 2.0)  # COMBO: shortest edge 112..448 for 224 crops
    hflip: bool = True
    colour_jitter: float = 0.2

    def __call__(self, frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """frames, maskiges: float [T,3,H,W] in [0,1]; masks: int64 [T,H,W] -> same, at ``size``."""
        out_h, out_w = self.size
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * float(torch.rand((), generator=gen))
        short = min(out_h, out_w) * scale
        h, w = frames.shape[-2:]
        ratio = short / min(h, w)
        new_h, new_w = max(out_h, round(h * ratio)), max(out_w, round(w * ratio))
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)
        if maskiges is not None:
            maskiges = F.interpolate(maskiges, size=(new_h, new_w), mode="nearest")
        masks = F.interpolate(masks[:, None].float(), size=(new_h, new_w), mode="nearest")[:, 0].long()
        top = int(torch.randint(0, new_h - out_h + 1, (), generator=gen))
        left = int(torch.randint(0, new_w - out_w + 1, (), generator=gen))
        crop = (slice(None), slice(None), slice(top, top + out_h), slice(left, left + out_w))
        frames, masks = frames[crop], masks[:, top:top + out_h, left:left + out_w]
        if maskiges is not None:
            maskiges = maskiges[crop]
        if self.hflip and float(torch.rand((), generator=gen)) < 0.5:
            frames, masks = frames.flip(-1), masks.flip(-1)
            if maskiges is not None:
                maskiges = maskiges.flip(-1)
        if self.colour_jitter > 0:
            j = self.colour_jitter
            brightness = 1 + (torch.rand((), generator=gen) * 2 - 1) * j
            contrast = 1 + (torch.rand((), generator=gen) * 2 - 1) * j
            mean = frames.mean(dim=(1, 2, 3), keepdim=True)
            frames = ((frames - mean) * contrast + mean) * brightness
            frames = frames.clamp(0, 1)
        return frames.contiguous(), (maskiges.contiguous() if maskiges is not None else None), masks.contiguous()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """float [T,3,H,W] in [0,1] -> ImageNet mean/std normalised (frames and maskiges alike, as COMBO)."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD


def to_unit_float(images: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] -> float [T,3,H,W] in [0,1]."""
    # contiguous() before float(): channels-first memory makes the later normalise ~2x faster.
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


class _Readers:
    """Per-process cache of open shards; reopened after fork (pid check)."""

    def __init__(self) -> None:
        self.pid = -1
        self.open: dict[Path, ShardReader] = {}

    def get(self, path: Path) -> ShardReader:
        if self.pid != os.getpid():
            self.open = {}  # inherited handles (if any) belong to the parent: never reuse them
            self.pid = os.getpid()
        if path not in self.open:
            self.open[path] = ShardReader(path)
        return self.open[path]


@dataclass
class ClipSource:
    """Which cached features a dataset reads."""

    data_root: str = "data"
    audio_key: str = "embeddings"  # "embeddings" (precomputed) or "logmel" (model runs VGGish itself)
    maskige: bool = True  # COMBO needs maskiges; TransAVS does not
    size: tuple[int, int] = (224, 224)  # model input size


class ClipDataset(Dataset):
    """Clips of ``split`` from the shards of ``datasets``; videos missing from any needed shard are skipped.

    Item: dict with ``frames`` float [T,3,H,W] (normalised), ``maskiges`` float [T,3,H,W] (normalised, when
    ``source.maskige``), ``audio`` float [T,D] or ``logmel`` float [T,96,64], ``masks`` int64 [T,H,W],
    ``labelled`` bool [T], ``index`` int, ``video_id`` str, ``dataset`` str.
    """

    def __init__(self, datasets: Sequence[str], shards: Sequence[int], split: str | Sequence[str],
                 source: ClipSource, augmentation: Augmentation | None = None, seed: int = 0) -> None:
        self.source = source
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        self.splits = {split} if isinstance(split, str) else set(split)
        self.clips: list[ClipRef] = []
        self.skipped: list[tuple[str, str]] = []
        for dataset in datasets:
            for shard in shards:
                self._index_shard(dataset, shard)
        self._readers = _Readers()

    def _paths(self, dataset: str, shard: int) -> dict[str, Path]:
        root = self.source.data_root
        paths = {"extract": shard_file(root, dataset, "extract", shard), "audio": shard_file(root, dataset, "audio", shard)}
        if self.source.maskige:
            paths["proposals"] = shard_file(root, dataset, "proposals", shard)
        return paths

    def _index_shard(self, dataset: str, shard: int) -> None:
        paths = self._paths(dataset, shard)
        if not paths["extract"].is_file():
            return
        # Opened briefly and closed: no handle survives into DataLoader workers.
        with ShardReader(paths["extract"]) as extract:
            others = {k: ShardReader(p) for k, p in paths.items() if k != "extract" and p.is_file()}
            try:
                for vid in extract.video_ids():
                    attrs = extract.video_attrs(vid)
                    if attrs.get("split") not in self.splits:
                        continue
                    missing = [k for k in paths if k != "extract" and (k not in others or not others[k].has(vid))]
                    if missing:
                        self.skipped.append((vid, f"no {'/'.join(missing)} features"))
                        continue
                    self.clips.append(ClipRef(dataset, shard, vid, int(attrs.get("num_seconds", 5))))
            finally:
                for reader in others.values():
                    reader.close()

    def __len__(self) -> int:
        return len(self.clips)

    def feature_params(self) -> dict[str, Any]:
        """The params the feature shards were made with (from their file attributes), so that
        ``avs predict`` can compute the same features for a new video."""
        if not self.clips:
            return {}
        ref = self.clips[0]
        found: dict[str, Any] = {}
        for kind, path in self._paths(ref.dataset, ref.shard).items():
            with ShardReader(path) as reader:
                attrs = reader.file_attrs()
            if f"{kind}_params" in attrs:
                found[kind] = attrs[f"{kind}_params"]
        return found

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        ref = self.clips[index]
        paths = self._paths(ref.dataset, ref.shard)
        extract = self._readers.get(paths["extract"])
        frames = to_unit_float(extract.read(ref.video_id, "frames"))
        T = frames.shape[0]
        if "gt_masks" in extract.keys(ref.video_id):
            masks = torch.from_numpy(extract.read(ref.video_id, "gt_masks").astype(np.int64))
            labelled = torch.from_numpy(extract.read(ref.video_id, "gt_valid").astype(bool))
        else:
            masks = torch.zeros(T, *frames.shape[-2:], dtype=torch.int64)
            labelled = torch.zeros(T, dtype=torch.bool)
        maskiges = None
        if self.source.maskige:
            maskiges = to_unit_float(self._readers.get(paths["proposals"]).read(ref.video_id, "maskige"))
        audio = torch.from_numpy(self._readers.get(paths["audio"]).read(ref.video_id, self.source.audio_key)).float()
        if self.augmentation is not None:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            frames, maskiges, masks = self.augmentation(frames, maskiges, masks, gen)
        else:
            frames, maskiges, masks = resize_clip(frames, maskiges, masks, self.source.size)
        item = {"frames": normalise(frames), "masks": masks, "labelled": labelled,
                "audio" if self.source.audio_key == "embeddings" else "logmel": audio,
                "index": index, "video_id": ref.video_id, "dataset": ref.dataset}
        if maskiges is not None:
            item["maskiges"] = normalise(maskiges)
        return item


def resize_clip(frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Deterministic resize to the model size (evaluation); masks keep their own size for scoring."""
    if tuple(frames.shape[-2:]) != tuple(size):
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        if maskiges is not None:
            maskiges = F.interpolate(maskiges, size=size, mode="nearest")
    return frames, maskiges, masks


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into a batch (see docs/CONVENTIONS.md); all clips of a batch must have the same T."""
    lengths = {item["frames"].shape[0] for item in items}
    if len(lengths) != 1:
        raise ValueError(f"clips of different lengths {sorted(lengths)} in one batch: use LengthGroupedSampler")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


class LengthGroupedSampler(Sampler[list[int]]):
    """Batches of clips with equal T (AVSS mixes 5- and 10-frame clips), shuffled per epoch from
    (seed, epoch); ``rank``/``world_size`` split the batches across DDP processes."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=gen).tolist() if self.shuffle else list(range(len(self.lengths)))
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(self.lengths[i], []).append(i)
        batches = []
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[i] for i in perm]
        usable = len(batches) - len(batches) % self.world_size if self.world_size > 1 else len(batches)
        return batches[self.rank:usable:self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
