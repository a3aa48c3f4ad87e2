"""The augmentation shared by frame, maskige and mask, and the deterministic resize of evaluation: crop
boxes, uint8 crop-and-resize kernels that keep the shards' channels-last memory order, and the
per-sample generator that makes every augmentation a function of (seed, epoch, index).

Moved out of :mod:`train.data` (which still re-exports every public name here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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


def augmentation_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one sample's augmentation: a function of (seed, epoch, index) only."""
    return torch.Generator().manual_seed(hash((seed, epoch, index)) & 0x7FFFFFFF)


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
