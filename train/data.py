"""Clip datasets over the cached HDF5 shards, the augmentation shared by frame, maskige and mask, and
:func:`prepare_batch`, which turns a collated batch into the model batch.

A sample is one video clip of T frames. Every array comes from the shards written by the
feature stages (``extract``: frames + ground truth, ``proposals``: maskiges, ``audio``: embeddings
or log-mel); nothing is recomputed here. Indexing the dataset opens each shard once, records where
every array of every clip lies in it (``pipeline.shards.ArrayLocation``: file offsets, no handle) and
reads the small per-clip facts (split, T, which frames are labelled), then closes the shard. An item
is then a few plain file reads plus inflation, in the process that reads it: each DataLoader worker
opens its own file descriptors (``pipeline.shards.ArrayReader``); nothing opened in the parent, h5py
handle or descriptor, is used in a worker.

Images stay uint8 from the shard to the collated batch, and in the shards' memory order: an image
tensor is [T,3,H,W] by shape but channels-last in memory (a permuted view of the stored [T,H,W,3],
``torch.channels_last`` strides). The dataset only crops, resizes and flips (uint8 in, uint8 out,
channels-last in, channels-last out; a clip already at the model size is not copied at all), the
collate stacks in that order, and the one transposition to channels-first memory happens in
:func:`prepare_batch`, on the training device, in the same pass as the float conversion; colour jitter
and ImageNet normalisation follow there. That is 4x less memory to resize, stack and pass between
DataLoader processes (8x for masks) than float32/int64 samples, and no copy in the workers that only
reorders bytes.

Which frames are supervised comes from the data (``gt_valid``): S4 train clips carry a label on
frame 1 only (semi-supervised), MS3 on all frames, AVSS where labels exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.feature_record import records_from_attrs
from pipeline.shards import (
    ARRAY_DIGESTS,
    SOURCE_DIGEST,
    ArrayLocation,
    ArrayReader,
    ShardError,
    ShardReader,
    array_digest,
    shard_file,
    source_mismatch,
    verify_array,
)
from train.augment import (
    Augmentation,
    CropBox,
    augmentation_generator,
    channels_last,
    crop_resize_bilinear,
    crop_resize_nearest,
    resize_clip,
)
from train.sampler import LengthGroupedSampler

__all__ = [  # the augmentation and the sampler live in their own modules; imported from here as before
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augmentation",
    "ClipDataset",
    "ClipRef",
    "ClipSource",
    "CropBox",
    "LengthGroupedSampler",
    "augmentation_generator",
    "channels_last",
    "clip_item",
    "collate_clips",
    "crop_resize_bilinear",
    "crop_resize_nearest",
    "embedding_dim",
    "image_tensor",
    "label_tensor",
    "normalise_images",
    "prepare_batch",
    "resize_clip",
]

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class ClipRef:
    """Where one clip lives: dataset, shard and video id (and its T, for length-grouped batching)."""

    dataset: str
    shard: int
    video_id: str
    num_frames: int


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] (as stored) -> uint8 [T,3,H,W] view with channels-last strides, no copy: the shape
    every consumer indexes, the memory order the shards, the augmentation and the collate keep."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def label_tensor(masks: np.ndarray) -> torch.Tensor:
    """Ground truth [T,H,W] as uint8 when every id fits (0..255, 255 = IGNORE_LABEL), else int64; ids are
    widened to int64 (what the losses and metrics index with) only in :func:`prepare_batch`."""
    if masks.dtype != np.uint8:
        fits = masks.dtype.kind in "biu" and (masks.size == 0 or (masks.min() >= 0 and masks.max() <= 255))
        masks = masks.astype(np.uint8 if fits else np.int64)
    return torch.from_numpy(masks)


def normalise_images(images: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [...,3,H,W] of any memory layout (the loader's are channels-last) -> contiguous float32
    [...,3,H,W], ImageNet mean/std normalised (frames and maskiges alike, as COMBO). With ``jitter`` (float
    [B,2]: brightness, contrast per clip, for images [B,T,3,H,W]) the frame colour jitter comes first: on
    [0,1] values, x -> ((x - m) * contrast + m) * brightness with m the mean of each frame, clamped to [0,1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (the loader's output), got {images.dtype}")
    # One pass converts to float and transposes to channels-first memory (the model's layout), on the
    # images' device: the loader never spends a copy on reordering bytes.
    x = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    x.copy_(images)
    mean, std = IMAGENET_MEAN.to(x.device), IMAGENET_STD.to(x.device)
    if jitter is None:
        return x.mul_(1 / (255 * std)).sub_(mean / std)  # (x / 255 - mean) / std in two in-place passes
    shape = (-1,) + (1,) * (x.dim() - 1)
    brightness, contrast = jitter[:, 0].to(x).view(shape), jitter[:, 1].to(x).view(shape)
    frame_mean = x.mean(dim=(-3, -2, -1), keepdim=True) / 255
    # The jitter and the normalisation are both affine per (clip, frame, channel), so they fold into one
    # multiply and one add on the 0..255 values: ((x/255 - m) * c + m) * b, then (. - mean) / std. The map
    # is increasing (std > 0), so clamping to [0,1] before it equals clamping to the images of 0 and 1 after.
    x.mul_(contrast * brightness / (255 * std)).add_((frame_mean * (1 - contrast) * brightness - mean) / std)
    torch.maximum(x, -mean / std, out=x)
    return torch.minimum(x, (1 - mean) / std, out=x)


def prepare_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Collated loader batch -> the model batch of docs/CONVENTIONS.md, on ``device``.

    In: ``frames`` (and ``maskiges``) uint8 [B,T,3,H,W] in any memory layout (channels-last from the
    loader), ``masks`` uint8/int64 [B,T,H,W], optional ``jitter`` float [B,2]; other tensors as the model
    takes them. Every tensor moves as it is (uint8: a quarter of the float32 bytes), then on ``device``:
    frames -> contiguous float32, jitter applied, normalised; maskiges -> contiguous float32, normalised (no
    jitter); masks -> int64. ``jitter`` is consumed."""
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    jitter = out.pop("jitter", None)
    out["frames"] = normalise_images(out["frames"], jitter)
    if "maskiges" in out:
        out["maskiges"] = normalise_images(out["maskiges"])
    if "masks" in out:
        out["masks"] = out["masks"].long()
    return out


@dataclass(frozen=True, eq=False)
class _ClipArrays:
    """Where one clip's arrays lie in its shards, and its labelled frames: found once, when the dataset is
    indexed (plain data, no handle: safe to inherit across fork)."""

    frames: ArrayLocation
    masks: ArrayLocation | None  # None: no ground truth (masks of zeros, nothing labelled)
    labelled: np.ndarray  # bool [T]: gt_valid as stored
    maskige: ArrayLocation | None  # None: the source reads no maskiges
    audio: ArrayLocation
    audio_digest: str = ""  # written with the audio array (stored uncompressed, so no zlib check covers it)


@dataclass
class ClipSource:
    """Which cached features a dataset reads."""

    data_root: str = "data"
    audio_key: str = "embeddings"  # "embeddings" (precomputed) or "logmel" (model runs VGGish itself)
    maskige: bool = True  # COMBO needs maskiges; TransAVS does not
    size: tuple[int, int] = (224, 224)  # model input size

    @classmethod
    def for_inputs(cls, inputs: Sequence[str], data_root: str, size: Sequence[int]) -> ClipSource:
        """The features a model with batch keys ``inputs`` (its ``model.inputs``) consumes."""
        audio_key = "logmel" if "logmel" in inputs else "embeddings"
        return cls(data_root=data_root, audio_key=audio_key, maskige="maskiges" in inputs, size=tuple(size))


def embedding_dim(data_root: str, datasets: Sequence[str], shards: Sequence[int]) -> int:
    """D of the precomputed audio embeddings [T,D] in the first audio shard that holds a video."""
    for dataset in datasets:
        for shard in shards:
            path = shard_file(data_root, dataset, "audio", shard)
            if path.is_file():
                with ShardReader(path) as reader:
                    ids = reader.video_ids()
                    if ids:
                        return int(reader.read(ids[0], "embeddings").shape[-1])
    raise FileNotFoundError(f"no audio shard with videos for {list(datasets)} under {data_root} (run `avs audio`)")


class ClipDataset(Dataset):
    """Clips of ``split`` from the shards of ``datasets``; videos missing from any needed shard are skipped.

    Item: dict with ``frames`` uint8 [T,3,H,W], ``maskiges`` uint8 [T,3,H,W] (when ``source.maskige``), both
    at the model size and dense channels-last in memory (see the module docstring; shape and values are
    what they would be channels-first), ``audio`` float [T,D] or ``logmel`` float [T,96,64],
    ``masks`` uint8 [T,H,W] (int64 if an id exceeds 255), ``labelled`` bool [T], ``jitter`` float [2]
    (brightness, contrast; only when augmenting with colour jitter), ``index`` int, ``video_id`` str,
    ``dataset`` str. :func:`collate_clips` stacks items; :func:`prepare_batch` makes the model batch.
    """

    def __init__(
        self,
        datasets: Sequence[str],
        shards: Sequence[int],
        split: str | Sequence[str],
        source: ClipSource,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.source = source
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        self.splits = {split} if isinstance(split, str) else set(split)
        self.clips: list[ClipRef] = []
        self.skipped: list[tuple[str, str]] = []
        self._arrays: list[_ClipArrays] = []  # parallel to self.clips
        for dataset in datasets:
            for shard in shards:
                self._index_shard(dataset, shard)
        self._reader = ArrayReader()  # opens its files in the process that reads (each worker its own)

    def _paths(self, dataset: str, shard: int) -> dict[str, Path]:
        root = self.source.data_root
        paths = {
            "extract": shard_file(root, dataset, "extract", shard),
            "audio": shard_file(root, dataset, "audio", shard),
        }
        if self.source.maskige:
            paths["proposals"] = shard_file(root, dataset, "proposals", shard)
        return paths

    def _index_shard(self, dataset: str, shard: int) -> None:
        paths = self._paths(dataset, shard)
        if not paths["extract"].is_file():
            return
        # Opened briefly and closed: no handle survives into DataLoader workers, only array locations.
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
                    derived = _check_pairing(vid, attrs, paths, others)
                    arrays, corrupt = self._locate(vid, extract, others, attrs, derived["audio"])
                    problem = corrupt or _length_mismatch(arrays)
                    if problem:
                        self.skipped.append((vid, problem))
                        continue
                    self._arrays.append(arrays)
                    self.clips.append(ClipRef(dataset, shard, vid, int(attrs.get("num_seconds", 5))))
            finally:
                for reader in others.values():
                    reader.close()

    def _locate(
        self, vid: str, extract: ShardReader, others: dict[str, ShardReader], attrs: dict, audio_attrs: dict
    ) -> tuple[_ClipArrays, str]:
        """Where the clip's arrays lie, and why its stored ``gt_valid`` cannot be trusted ("" when it can:
        it is read here, and checked against its digest, since no zlib check covers an uncompressed array)."""
        frames, corrupt = extract.locate(vid, "frames"), ""
        if extract.has_array(vid, "gt_masks"):
            valid = extract.read(vid, "gt_valid")
            corrupt = verify_array(valid, attrs, "gt_valid")
            masks, labelled = extract.locate(vid, "gt_masks"), valid.astype(bool)
        else:
            masks, labelled = None, np.zeros(frames.shape[0], bool)
        maskige = others["proposals"].locate(vid, "maskige") if self.source.maskige else None
        audio = others["audio"].locate(vid, self.source.audio_key)
        audio_digest = (audio_attrs.get(ARRAY_DIGESTS) or {}).get(self.source.audio_key, "")
        return _ClipArrays(frames, masks, labelled, maskige, audio, audio_digest), corrupt

    def __len__(self) -> int:
        return len(self.clips)

    def feature_params(self) -> dict[str, Any]:
        """The feature records (kind -> params record) the shards of this dataset were made with, so that
        ``avs predict`` computes the same features for a new video. Every shard must hold the same records:
        a model trained on features made with different settings has no single recipe to reproduce."""
        found: dict[str, Any] = {}
        first: dict[str, Path] = {}
        for ref in {(c.dataset, c.shard): c for c in self.clips}.values():
            for path in self._paths(ref.dataset, ref.shard).values():
                with ShardReader(path) as reader:
                    records = records_from_attrs(reader.file_attrs())
                for kind, record in records.items():
                    if kind in found and found[kind] != record:
                        raise ValueError(
                            f"{path} and {first[kind]}: {kind} features made with different settings; "
                            f"rerun `avs {kind}` so that all shards share one"
                        )
                    found.setdefault(kind, record)
                    first.setdefault(kind, path)
        return found

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def read_arrays(self, index: int) -> dict[str, np.ndarray | None]:
        """Clip ``index`` as stored, the only file reads of an item: ``frames`` uint8 [T,H,W,3], ``masks``
        [T,H,W] (None without ground truth), ``labelled`` bool [T], ``maskige`` uint8 [T,H,W,3] (None unless
        ``source.maskige``), ``audio`` (the ``source.audio_key`` array)."""
        where, read = self._arrays[index], self._reader.read
        audio = read(where.audio)
        if where.audio_digest and array_digest(audio) != where.audio_digest:
            raise ShardError(
                f"{where.audio.path}: {where.audio.key} of video {where.audio.video_id!r} does not match the digest "
                "written with it (corrupt shard): rerun `avs audio`"
            )
        return {
            "frames": read(where.frames),
            "masks": read(where.masks) if where.masks is not None else None,
            "labelled": where.labelled.copy(),
            "maskige": read(where.maskige) if where.maskige is not None else None,
            "audio": audio,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        ref, arrays = self.clips[index], self.read_arrays(index)
        frames = image_tensor(arrays["frames"])
        if arrays["masks"] is not None:
            masks = label_tensor(arrays["masks"])
        else:
            masks = torch.zeros(frames.shape[0], *frames.shape[-2:], dtype=torch.uint8)
        maskiges = image_tensor(arrays["maskige"]) if arrays["maskige"] is not None else None
        audio = torch.from_numpy(arrays["audio"]).float()
        gen = augmentation_generator(self.seed, self.epoch, index) if self.augmentation is not None else None
        return clip_item(
            frames,
            maskiges,
            masks,
            torch.from_numpy(arrays["labelled"]),
            audio,
            self.source,
            self.augmentation,
            gen,
            index=index,
            video_id=ref.video_id,
            dataset=ref.dataset,
        )


def _check_pairing(vid: str, attrs: dict, paths: dict[str, Path], others: dict[str, ShardReader]) -> dict[str, dict]:
    """The attributes of ``vid`` in each feature shard, after checking that each was made from this very
    extracted video (:mod:`pipeline.shards.identity`): a stale or swapped feature shard stops the run with
    one line naming both files, since every clip it pairs would be wrong."""
    derived = {kind: reader.video_attrs(vid, (SOURCE_DIGEST, ARRAY_DIGESTS)) for kind, reader in others.items()}
    for kind, found in derived.items():
        why = source_mismatch(attrs, found)
        if why:
            raise ShardError(
                f"{paths[kind]} does not belong with {paths['extract']} ({vid!r} {why}): rerun `avs {kind}`"
            )
    return derived


def _length_mismatch(arrays: _ClipArrays) -> str:
    """Why a clip's arrays cannot form one sample (their T, or frame and maskige sizes, differ), or ""."""
    if arrays.maskige is not None and arrays.maskige.shape[1:3] != arrays.frames.shape[1:3]:
        return f"maskiges are {list(arrays.maskige.shape[1:3])} but frames {list(arrays.frames.shape[1:3])}"
    lengths = {"frames": arrays.frames.shape[0], "audio": arrays.audio.shape[0]}
    if arrays.maskige is not None:
        lengths["maskiges"] = arrays.maskige.shape[0]
    if arrays.masks is not None:
        lengths["ground truth"] = arrays.masks.shape[0]
    if len(set(lengths.values())) > 1:
        return "arrays of different lengths: " + ", ".join(f"{k} {v}" for k, v in lengths.items())
    return ""


def clip_item(
    frames: torch.Tensor,
    maskiges: torch.Tensor | None,
    masks: torch.Tensor,
    labelled: torch.Tensor,
    audio: torch.Tensor,
    source: ClipSource,
    augmentation: Augmentation | None,
    gen: torch.Generator | None,
    **info: Any,
) -> dict[str, Any]:
    """One dataset item (see :class:`ClipDataset`) from the arrays as read: frames/maskiges uint8 [T,3,H,W]
    (any strides; the :func:`image_tensor` views of the stored arrays are channels-last, the fast case),
    masks [T,H,W] from :func:`label_tensor`, labelled bool
    [T], audio float [T,D] or [T,96,64]; augmented with ``gen`` (see :func:`augmentation_generator`) or,
    without augmentation, resized to ``source.size``. Shared by every dataset that must give identical items."""
    jitter = None
    if augmentation is not None:
        assert gen is not None, "augmentation needs its (seed, epoch, index) generator"
        frames, maskiges, masks, jitter = augmentation(frames, maskiges, masks, gen)
    else:
        frames, maskiges, masks = resize_clip(frames, maskiges, masks, source.size)
    item = {
        "frames": frames,
        "masks": masks,
        "labelled": labelled,
        "audio" if source.audio_key == "embeddings" else "logmel": audio,
        **info,
    }
    if maskiges is not None:
        item["maskiges"] = maskiges
    if jitter is not None:
        item["jitter"] = jitter
    return item


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into a batch (see docs/CONVENTIONS.md); all clips of a batch must have the same T.
    Images stay channels-last: ``frames``/``maskiges`` are uint8 [B,T,3,H,W] views of [B,T,H,W,3] blocks."""
    lengths = {item["frames"].shape[0] for item in items}
    if len(lengths) != 1:
        raise ValueError(f"clips of different lengths {sorted(lengths)} in one batch: use LengthGroupedSampler")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = _stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


def _stack(values: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack in the items' memory order: channels-last [T,C,H,W] items stack as [T,H,W,C] blocks into a
    [B,T,H,W,C] tensor, returned as its [B,T,C,H,W] view (a plain copy, where stacking the [T,C,H,W] views
    would transpose every image). In a DataLoader worker the result is allocated in shared memory, as
    torch's default_collate does, so handing the batch to the main process copies nothing more."""
    first = values[0]
    if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
        return _stack([v.permute(0, 2, 3, 1) for v in values]).permute(0, 1, 4, 2, 3)
    out = None
    if torch.utils.data.get_worker_info() is not None:
        storage = first._typed_storage()._new_shared(sum(v.numel() for v in values), device=first.device)
        out = first.new(storage).resize_(len(values), *first.shape)
    return torch.stack(values, out=out)
