"""Clip datasets over the cached HDF5 shards, the augmentation shared by frame, maskige and mask, and
:func:`prepare_batch`, which turns a collated batch into the model batch.

A sample is one video clip of T frames. Every array comes from the shards written by the
feature stages (``extract``: frames + ground truth, ``proposals``: maskiges, ``audio``: embeddings
or log-mel); nothing is recomputed here. Shards are opened lazily in the process that reads them
(each DataLoader worker gets its own h5py handles; a handle is never inherited across fork).

Images stay uint8 from the shard to the collated batch: the dataset only crops, resizes and flips
(uint8 in, uint8 out), and colour jitter, float conversion and ImageNet normalisation happen once
per batch in :func:`prepare_batch`, on the training device. That is 4x less memory to resize, stack
and pass between DataLoader processes (8x for masks) than float32/int64 samples.

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


@dataclass(frozen=True)
class CropBox:
    """A window of the source frame in whole pixels, resized to the output size, mirrored when ``flip``."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


@dataclass
class Augmentation:
    """Same random geometry for frame, maskige and mask (COMBO: resize shortest edge in a range,
    random crop, flip), colour jitter on the frame only. Randomness comes from a generator the
    caller seeds, so a sample's augmentation depends on (seed, epoch, index) only: reproducible
    with any number of DataLoader workers and across resumes.

    The geometry is COMBO's (resize the whole frame, then crop), computed the cheap way round: the
    crop window is mapped back to source pixels and only that window is resized to ``size``. The
    colour jitter factors are drawn here and returned; :func:`prepare_batch` applies them."""

    size: tuple[int, int] = (224, 224)
    scale_range: tuple[float, float] = (0.5, 2.0)  # COMBO: shortest edge 112..448 for 224 crops
    hflip: bool = True
    colour_jitter: float = 0.2

    def draw(self, height: int, width: int, gen: torch.Generator) -> tuple[CropBox, torch.Tensor | None]:
        """The random choices for one clip of ``height`` x ``width`` frames, drawn from ``gen`` in a fixed
        order (scale, crop top, crop left, flip, brightness, contrast) -> (crop box in source pixels,
        float32 [2] brightness and contrast factors, or None without colour jitter)."""
        out_h, out_w = self.size
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * float(torch.rand((), generator=gen))
        ratio = min(out_h, out_w) * scale / min(height, width)
        # The frame as COMBO resizes it (never smaller than the crop) and the crop's place in it.
        new_h, new_w = max(out_h, round(height * ratio)), max(out_w, round(width * ratio))
        top = int(torch.randint(0, new_h - out_h + 1, (), generator=gen))
        left = int(torch.randint(0, new_w - out_w + 1, (), generator=gen))
        flip = self.hflip and float(torch.rand((), generator=gen)) < 0.5
        jitter = None
        if self.colour_jitter > 0:
            j = self.colour_jitter
            brightness = 1 + (torch.rand((), generator=gen) * 2 - 1) * j
            contrast = 1 + (torch.rand((), generator=gen) * 2 - 1) * j
            jitter = torch.stack([brightness, contrast]).float()
        rows = _source_span(top, out_h, height / new_h, height)
        cols = _source_span(left, out_w, width / new_w, width)
        return CropBox(rows[0], cols[0], rows[1], cols[1], flip), jitter

    def __call__(self, frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """frames, maskiges: uint8 [T,3,H,W] (any strides); masks: uint8/int64 [T,H,W] -> frames, maskiges uint8
        [T,3,h,w] and masks [T,h,w] (same dtype) at ``size``, contiguous, all from one crop box (bilinear for
        frames, nearest for maskiges and masks); plus the jitter factors (see :meth:`draw`)."""
        box, jitter = self.draw(*frames.shape[-2:], gen)
        frames = crop_resize_bilinear(frames, box, self.size)
        if maskiges is not None:
            maskiges = crop_resize_nearest(maskiges, box, self.size)
        return frames, maskiges, crop_resize_nearest(masks, box, self.size), jitter


def _source_span(start: int, length: int, source_per_output: float, limit: int) -> tuple[int, int]:
    """(first pixel, pixel count) in the source of ``length`` output pixels from ``start`` of a resize by
    1 / ``source_per_output``, rounded to whole pixels and kept inside ``[0, limit)``."""
    count = min(limit, max(1, round(length * source_per_output)))
    return min(round(start * source_per_output), limit - count), count


def crop_resize_bilinear(images: torch.Tensor, box: CropBox, size: Sequence[int]) -> torch.Tensor:
    """uint8 [T,C,H,W] CPU tensor (any strides) -> ``box`` resized bilinearly to ``size``: uint8 [T,C,h,w], contiguous.

    No antialiasing, as F.interpolate did on floats before and as COMBO's cv2 resize. uint8 in and out
    runs torch's vectorised uint8 kernel, fastest on the channels-last strides the shards give."""
    window = images[..., box.top:box.top + box.height, box.left:box.left + box.width]
    if (box.height, box.width) != tuple(size):
        window = F.interpolate(window, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    return _dense(window, box.flip)


def crop_resize_nearest(images: torch.Tensor, box: CropBox, size: Sequence[int]) -> torch.Tensor:
    """[T,C,H,W] or [T,H,W] CPU tensor (uint8 maskiges, uint8/int64 masks; any strides) -> ``box`` resized to
    ``size`` by nearest neighbour, same dtype, contiguous. Output pixel i takes box pixel floor(i * box / size),
    F.interpolate's "nearest" rule, as an index gather (exact for any dtype, and cheaper on uint8)."""
    out_h, out_w = size
    window = images[..., box.top:box.top + box.height, box.left:box.left + box.width]
    if (box.height, box.width) == (out_h, out_w):
        return _dense(window, box.flip)
    rows = np.arange(out_h) * box.height // out_h
    cols = np.arange(out_w) * box.width // out_w
    if box.flip:
        cols = cols[::-1]
    if out_h * out_w < box.height * box.width and window.dim() == 4 and window.stride(1) == 1:
        # Shrinking a channels-last window: gather in its memory order, transpose the smaller result.
        pixels = window.permute(0, 2, 3, 1).numpy().take(rows, axis=1).take(cols, axis=2)
        return _dense(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    # Growing (or channels-first already): make the smaller window channels-first, then gather.
    return torch.from_numpy(_dense(window).numpy().take(rows, axis=-2).take(cols, axis=-1))


def _dense(images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """``images`` as a contiguous (channels-first) CPU tensor, mirrored left-right when ``flip``. numpy makes
    the strided uint8 copy (channels-last view -> channels-first) ~3x faster than torch's .contiguous()."""
    if images.is_contiguous() and not flip:
        return images
    array = images.numpy()
    return torch.from_numpy(np.ascontiguousarray(array[..., ::-1] if flip else array))


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] (as stored) -> uint8 [T,3,H,W] view with channels-last strides, no copy: the
    geometry (:class:`Augmentation`, :func:`resize_clip`) writes the contiguous channels-first result."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def label_tensor(masks: np.ndarray) -> torch.Tensor:
    """Ground truth [T,H,W] as uint8 when every id fits (0..255, 255 = IGNORE_LABEL), else int64; ids are
    widened to int64 (what the losses and metrics index with) only in :func:`prepare_batch`."""
    if masks.dtype != np.uint8:
        fits = masks.dtype.kind in "biu" and (masks.size == 0 or (masks.min() >= 0 and masks.max() <= 255))
        masks = masks.astype(np.uint8 if fits else np.int64)
    return torch.from_numpy(masks)


def normalise_images(images: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [...,3,H,W] -> float32 [...,3,H,W], ImageNet mean/std normalised (frames and maskiges alike,
    as COMBO). With ``jitter`` (float [B,2]: brightness, contrast per clip, for images [B,T,3,H,W]) the
    frame colour jitter comes first: on [0,1] values, x -> ((x - m) * contrast + m) * brightness with m the
    mean of each frame, clamped to [0,1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (the loader's output), got {images.dtype}")
    x = images.float()
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

    In: ``frames`` (and ``maskiges``) uint8 [B,T,3,H,W], ``masks`` uint8/int64 [B,T,H,W], optional
    ``jitter`` float [B,2]; other tensors as the model takes them. Every tensor moves as it is (uint8: a
    quarter of the float32 bytes), then on ``device``: frames -> float32, jitter applied, normalised;
    maskiges -> float32, normalised (no jitter); masks -> int64. ``jitter`` is consumed."""
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    jitter = out.pop("jitter", None)
    out["frames"] = normalise_images(out["frames"], jitter)
    if "maskiges" in out:
        out["maskiges"] = normalise_images(out["maskiges"])
    if "masks" in out:
        out["masks"] = out["masks"].long()
    return out


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

    Item: dict with ``frames`` uint8 [T,3,H,W], ``maskiges`` uint8 [T,3,H,W] (when ``source.maskige``), both
    contiguous channels-first at the model size, ``audio`` float [T,D] or ``logmel`` float [T,96,64],
    ``masks`` uint8 [T,H,W] (int64 if an id exceeds 255), ``labelled`` bool [T], ``jitter`` float [2]
    (brightness, contrast; only when augmenting with colour jitter), ``index`` int, ``video_id`` str,
    ``dataset`` str. :func:`collate_clips` stacks items; :func:`prepare_batch` makes the model batch.
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
        frames = image_tensor(extract.read(ref.video_id, "frames"))
        T = frames.shape[0]
        if extract.has_array(ref.video_id, "gt_masks"):
            masks = label_tensor(extract.read(ref.video_id, "gt_masks"))
            labelled = torch.from_numpy(extract.read(ref.video_id, "gt_valid").astype(bool))
        else:
            masks = torch.zeros(T, *frames.shape[-2:], dtype=torch.uint8)
            labelled = torch.zeros(T, dtype=torch.bool)
        maskiges = None
        if self.source.maskige:
            maskiges = image_tensor(self._readers.get(paths["proposals"]).read(ref.video_id, "maskige"))
        audio = torch.from_numpy(self._readers.get(paths["audio"]).read(ref.video_id, self.source.audio_key)).float()
        gen = augmentation_generator(self.seed, self.epoch, index) if self.augmentation is not None else None
        return clip_item(frames, maskiges, masks, labelled, audio, self.source, self.augmentation, gen,
                         index=index, video_id=ref.video_id, dataset=ref.dataset)


def augmentation_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one sample's augmentation: a function of (seed, epoch, index) only."""
    return torch.Generator().manual_seed(hash((seed, epoch, index)) & 0x7FFFFFFF)


def clip_item(frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor, labelled: torch.Tensor,
              audio: torch.Tensor, source: ClipSource, augmentation: Augmentation | None,
              gen: torch.Generator | None, **info: Any) -> dict[str, Any]:
    """One dataset item (see :class:`ClipDataset`) from the arrays as read: frames/maskiges uint8 [T,3,H,W]
    (any strides, e.g. :func:`image_tensor` views), masks [T,H,W] from :func:`label_tensor`, labelled bool
    [T], audio float [T,D] or [T,96,64]; augmented with ``gen`` (see :func:`augmentation_generator`) or,
    without augmentation, resized to ``source.size``. Shared by every dataset that must give identical items."""
    jitter = None
    if augmentation is not None:
        assert gen is not None, "augmentation needs its (seed, epoch, index) generator"
        frames, maskiges, masks, jitter = augmentation(frames, maskiges, masks, gen)
    else:
        frames, maskiges, masks = resize_clip(frames, maskiges, masks, source.size)
    item = {"frames": frames, "masks": masks, "labelled": labelled,
            "audio" if source.audio_key == "embeddings" else "logmel": audio, **info}
    if maskiges is not None:
        item["maskiges"] = maskiges
    if jitter is not None:
        item["jitter"] = jitter
    return item


def resize_clip(frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor,
                size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Deterministic resize to the model size (evaluation, prediction): frames uint8 [T,3,H,W] bilinear,
    maskiges uint8 [T,3,H,W] nearest (any strides) -> uint8 [T,3,h,w], contiguous; masks keep their own
    size for scoring (made contiguous)."""
    box = CropBox(0, 0, *frames.shape[-2:])
    frames = crop_resize_bilinear(frames, box, size)
    if maskiges is not None:
        maskiges = crop_resize_nearest(maskiges, box, size)
    return frames, maskiges, _dense(masks)


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
