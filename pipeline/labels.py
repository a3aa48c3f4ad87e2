"""Ground-truth labels: the class count, the ignore label, the VOC palette and label decoding (:func:`read_label`).

Decoding follows the official AVSBench loaders (OpenNLPLab/AVSBench ``avs_scripts``):

- ``binary_png`` (S4, MS3): the image is converted with PIL's mode ``"1"`` (as the S4 loader
  does) at its own size, so a {0,255} mask gives exactly the loader's {0,1} mask; it is then
  resized NEAREST when another size is asked for.
- ``voc_rgb`` (AVSS): every pixel whose RGB colour equals row k of the 71-row VOC palette is
  class k; a colour that matches no row is class 0 (background), as the official
  ``color_mask_to_label`` (an argmax over 71 all-false maps) gives. Those pixels are counted so
  the caller can report them.

AVSS frame geometry: the official train loader resizes the short side to 224 (BILINEAR for
frames, NEAREST for labels) and centre-crops 224x224; val/test resize to 224x224.
:func:`fit_image` implements both (``fit="crop"`` / ``fit="stretch"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where labels are decoded: `avs manifest` (FITS) does without it
    import numpy as np

NUM_AVSS_CLASSES = 71  # 70 AVSBench-semantic classes + background (label2idx.json has 71 entries)
IGNORE_LABEL = 255  # never a class id: pixels the losses and metrics skip
LABEL_FORMATS = ("binary_png", "voc_rgb", "none")
FITS = ("stretch", "crop")


class LabelError(ValueError):
    """A label image cannot be read or decoded; the message names the file."""


def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC bit-interleave palette AVSBench-semantic uses: uint8 [n,3], 0 = black, 1 = (128,0,0)."""
    import numpy as np

    palette = np.zeros((n, 3), np.uint8)
    for label in range(n):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[label] = (r, g, b)
    return palette


def _rgb_codes(rgb: np.ndarray) -> np.ndarray:
    import numpy as np

    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@dataclass
class DecodedLabel:
    """ids uint8 [H,W] (binary {0,1} or class ids 0..70) and the pixels of unknown colour (AVSS)."""

    ids: np.ndarray
    unknown_pixels: int = 0


def rgb_to_class_ids(rgb: np.ndarray, num_classes: int = NUM_AVSS_CLASSES) -> DecodedLabel:
    """uint8 [H,W,3] palette colours -> class ids uint8 [H,W]; unknown colours -> 0 (official rule)."""
    import numpy as np

    codes = _rgb_codes(voc_palette(num_classes))
    flat = _rgb_codes(rgb)
    uniques, inverse = np.unique(flat, return_inverse=True)
    lookup = {int(c): k for k, c in enumerate(codes)}
    mapped = np.array([lookup.get(int(u), -1) for u in uniques], np.int64)
    unknown = int(np.sum((mapped < 0)[inverse]))
    ids = np.where(mapped < 0, 0, mapped).astype(np.uint8)[inverse].reshape(flat.shape)
    return DecodedLabel(ids, unknown)


def fit_image(img, size: tuple[int, int], fit: str = "stretch", is_label: bool = False):
    """Resize a PIL image to ``size`` (H, W): ``stretch`` = resize to exactly (H, W) (AVSBench
    val/test, S4, MS3); ``crop`` = scale the short side to fit and centre-crop (the official AVSS
    train loader: ``crop_resize_img``). BILINEAR for frames, NEAREST for labels."""
    from PIL import Image

    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    height, width = int(size[0]), int(size[1])
    resample = Image.NEAREST if is_label else Image.BILINEAR
    if fit == "stretch":
        return img if img.size == (width, height) else img.resize((width, height), resample)
    w, h = img.size
    # The official arithmetic (``int(1.0 * w * oh / h)``), so sizes match it to the pixel.
    if w * height > h * width:
        oh = height
        ow = int(1.0 * w * oh / h)
    else:
        ow = width
        oh = int(1.0 * h * ow / w)
    if (ow, oh) != (w, h):
        img = img.resize((ow, oh), resample)
    x1, y1 = int(round((ow - width) / 2.0)), int(round((oh - height) / 2.0))
    return img.crop((x1, y1, x1 + width, y1 + height))


def read_label(path: str | Path, label_format: str, size: tuple[int, int], fit: str = "stretch") -> DecodedLabel:
    """Read one ground-truth image as :class:`DecodedLabel` at ``size`` (H, W), NEAREST."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    if label_format not in ("binary_png", "voc_rgb"):
        raise LabelError(f"{path}: unknown label format {label_format!r}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = "RGB" if label_format == "voc_rgb" else "1"
            array = np.asarray(fit_image(img.convert(mode), size, fit, is_label=True))
    except OSError as exc:
        raise LabelError(f"{path}: unreadable label image ({exc})") from exc
    if label_format == "binary_png":
        return DecodedLabel(array.astype(np.uint8))
    return rgb_to_class_ids(array)
