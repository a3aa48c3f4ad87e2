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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from pipeline.feature_record import records_from_attrs
from pipeline.shards import ArrayLocation, ArrayReader, ShardReader, shard_file

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


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

    def __call__(
        self, frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """frames, maskiges: uint8 [T,3,H,W] (any strides; channels-last is the fast case); masks: uint8/int64
        [T,H,W] -> frames, maskiges uint8 [T,3,h,w] dense channels-last and masks [T,h,w] (same dtype) contiguous,
        at ``size``, all from one crop box (bilinear for frames, nearest for maskiges and masks); plus the
        jitter factors (see :meth:`draw`)."""
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
    """uint8 [T,C,H,W] CPU tensor (any strides) -> ``box`` resized bilinearly to ``size``: uint8 [T,C,h,w], dense
    channels-last (the input itself when it already is and nothing changes).

    No antialiasing, as F.interpolate did on floats before and as COMBO's cv2 resize. uint8 in and out
    runs torch's vectorised uint8 kernel, which keeps the channels-last order the shards give."""
    window = images[..., box.top : box.top + box.height, box.left : box.left + box.width]
    if (box.height, box.width) != tuple(size):
        window = F.interpolate(window, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    return channels_last(window, box.flip)


def crop_resize_nearest(images: torch.Tensor, box: CropBox, size: Sequence[int]) -> torch.Tensor:
    """[T,C,H,W] (uint8 maskiges; any strides) or [T,H,W] (uint8/int64 masks) CPU tensor -> ``box`` resized to
    ``size`` by nearest neighbour, same dtype; images come out dense channels-last, masks contiguous. Output
    pixel i takes box pixel floor(i * box / size), F.interpolate's "nearest" rule, as an index gather (exact for
    any dtype, and cheaper on uint8)."""
    out_h, out_w = size
    window = images[..., box.top : box.top + box.height, box.left : box.left + box.width]
    if (box.height, box.width) == (out_h, out_w):
        return channels_last(window, box.flip) if window.dim() == 4 else _dense(window, box.flip)
    rows = np.arange(out_h) * box.height // out_h
    cols = np.arange(out_w) * box.width // out_w
    if box.flip:
        cols = cols[::-1]
    if window.dim() == 4:
        # In memory order [T,H,W,C]. Columns are gathered as single elements (element c * C + channel of
        # each row), which numpy does several times faster than C-element pixels, and on the fewer rows:
        # before the row gather when it grows the window, after it when it shrinks (a row gather moves
        # whole rows and costs little either way).
        pixels = window.permute(0, 2, 3, 1).numpy()
        T, C = pixels.shape[0], pixels.shape[-1]
        picks = (cols[:, None] * C + np.arange(C)).ravel()
        if out_h > box.height:
            pixels = np.ascontiguousarray(pixels).reshape(T, box.height, -1).take(picks, axis=2).take(rows, axis=1)
        else:
            pixels = pixels.take(rows, axis=1).reshape(T, out_h, -1).take(picks, axis=2)
        return torch.from_numpy(pixels.reshape(T, out_h, out_w, C)).permute(0, 3, 1, 2)
    return torch.from_numpy(_dense(window).numpy().take(rows, axis=-2).take(cols, axis=-1))


def channels_last(images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """[T,C,H,W] -> the same values dense in channels-last memory (``images`` itself when it already is and
    ``flip`` is False), mirrored left-right when ``flip``."""
    if flip:
        images = images.flip(-1)  # keeps a channels-last input channels-last
    if images.is_contiguous(memory_format=torch.channels_last):
        return images
    return images.contiguous(memory_format=torch.channels_last)


def _dense(images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """``images`` (masks [T,H,W]) as a contiguous CPU tensor, mirrored left-right when ``flip`` (numpy makes
    the strided copy faster than torch's .contiguous())."""
    if images.is_contiguous() and not flip:
        return images
    array = images.numpy()
    return torch.from_numpy(np.ascontiguousarray(array[..., ::-1] if flip else array))


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
                    arrays = self._locate(vid, extract, others)
                    mismatch = _length_mismatch(arrays)
                    if mismatch:
                        self.skipped.append((vid, mismatch))
                        continue
                    self._arrays.append(arrays)
                    self.clips.append(ClipRef(dataset, shard, vid, int(attrs.get("num_seconds", 5))))
            finally:
                for reader in others.values():
                    reader.close()

    def _locate(self, vid: str, extract: ShardReader, others: dict[str, ShardReader]) -> _ClipArrays:
        frames = extract.locate(vid, "frames")
        if extract.has_array(vid, "gt_masks"):
            masks, labelled = extract.locate(vid, "gt_masks"), extract.read(vid, "gt_valid").astype(bool)
        else:
            masks, labelled = None, np.zeros(frames.shape[0], bool)
        maskige = others["proposals"].locate(vid, "maskige") if self.source.maskige else None
        return _ClipArrays(frames, masks, labelled, maskige, others["audio"].locate(vid, self.source.audio_key))

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
        return {
            "frames": read(where.frames),
            "masks": read(where.masks) if where.masks is not None else None,
            "labelled": where.labelled.copy(),
            "maskige": read(where.maskige) if where.maskige is not None else None,
            "audio": read(where.audio),
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


def _length_mismatch(arrays: _ClipArrays) -> str:
    """Why a clip's arrays cannot form one sample (their T differ), or "" when they agree."""
    lengths = {"frames": arrays.frames.shape[0], "audio": arrays.audio.shape[0]}
    if arrays.maskige is not None:
        lengths["maskiges"] = arrays.maskige.shape[0]
    if arrays.masks is not None:
        lengths["ground truth"] = arrays.masks.shape[0]
    if len(set(lengths.values())) > 1:
        return "arrays of different lengths: " + ", ".join(f"{k} {v}" for k, v in lengths.items())
    return ""


def augmentation_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one sample's augmentation: a function of (seed, epoch, index) only."""
    return torch.Generator().manual_seed(hash((seed, epoch, index)) & 0x7FFFFFFF)


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


def resize_clip(
    frames: torch.Tensor, maskiges: torch.Tensor | None, masks: torch.Tensor, size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Deterministic resize to the model size (evaluation, prediction): frames uint8 [T,3,H,W] bilinear,
    maskiges uint8 [T,3,H,W] nearest (any strides) -> uint8 [T,3,h,w], dense channels-last (no copy when
    already at that size and layout); masks keep their own size for scoring (made contiguous)."""
    box = CropBox(0, 0, *frames.shape[-2:])
    frames = crop_resize_bilinear(frames, box, size)
    if maskiges is not None:
        maskiges = crop_resize_nearest(maskiges, box, size)
    return frames, maskiges, _dense(masks)


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


class LengthGroupedSampler(Sampler[list[int]]):
    """Batches of clips with equal T (AVSS mixes 5- and 10-frame clips), shuffled per epoch from
    (seed, epoch); ``rank``/``world_size`` split the batches across DDP processes."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = (
            torch.randperm(len(self.lengths), generator=gen).tolist()
            if self.shuffle
            else list(range(len(self.lengths)))
        )
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(self.lengths[i], []).append(i)
        batches = []
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[i] for i in perm]
        usable = len(batches) - len(batches) % self.world_size if self.world_size > 1 else len(batches)
        return batches[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
