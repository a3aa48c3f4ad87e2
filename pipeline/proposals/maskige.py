"""Maskige encoding: class-agnostic masks -> one RGB image, exactly as COMBO builds it.

COMBO's rule: masks are sorted by area ascending; every pixel takes the label
``1 + area rank`` of the smallest mask that covers it, 0 where no mask covers it; label k
is coloured with row k of the ADE20K palette; the result is resized NEAREST to the frame.

The paper writes the same thing as a linear map X(c) = cA (A in R^{N x 3}): with
``c = exclusive_masks(masks)`` (channel k = pixels whose label is k, so exactly one channel
is on per pixel) and ``A = colour_matrix(...)`` (row k = palette row k),
``apply_colour_matrix(c, A) == encode_maskige(masks)``.

Beyond the palette (COMBO silently breaks there: it casts labels to uint8 before its
"more than 255 labels" check, and labels >= 150 index past the 150-row palette): with the
150-row palette at most ``MAX_LABELS = 149`` masks get a label. When a frame has more, the
surplus SMALLEST masks are dropped before ranking (the largest 149 are kept and ranked
among themselves), so the scene layout given by the large regions survives and only the
tiniest fragments disappear; a frame with <= 149 masks is encoded exactly as COMBO does.
``encode_maskige`` reports how many masks it dropped.
"""

from __future__ import annotations

import numpy as np

from pipeline.proposals.palette import ade20k_palette

MAX_LABELS = 149  # palette rows 1..149; row 0 is "uncovered"


def _check_masks(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [K,H,W], got shape {list(masks.shape)}")
    return masks.astype(bool, copy=False)


def keep_for_palette(masks: np.ndarray, max_labels: int = MAX_LABELS) -> tuple[np.ndarray, int]:
    """Indices (into masks) of the masks that receive a label, and how many were dropped.

    Keeps the ``max_labels`` largest masks when there are more (ties: lower index wins).
    """
    masks = _check_masks(masks)
    count = masks.shape[0]
    if count <= max_labels:
        return np.arange(count), 0
    areas = masks.reshape(count, -1).sum(1)
    largest_first = np.argsort(-areas, kind="stable")
    return np.sort(largest_first[:max_labels]), count - max_labels


def label_map(masks: np.ndarray, max_labels: int = MAX_LABELS) -> tuple[np.ndarray, int]:
    """Per-pixel label int32 [H,W] (0 uncovered, 1 + area rank of the smallest covering mask).

    Area ties are ranked by mask index (stable sort). Returns (labels, number of masks dropped
    because there were more than ``max_labels``).
    """
    masks = _check_masks(masks)
    keep, dropped = keep_for_palette(masks, max_labels)
    masks = masks[keep]
    if masks.shape[0] == 0:
        return np.zeros(masks.shape[1:], dtype=np.int32), dropped
    areas = masks.reshape(masks.shape[0], -1).sum(1)
    by_area = masks[np.argsort(areas, kind="stable")]
    first_cover = by_area.argmax(axis=0)  # index of the first True along K = smallest covering mask
    covered = by_area.any(axis=0)
    return np.where(covered, first_cover + 1, 0).astype(np.int32), dropped


def nearest_resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """NEAREST resize of [h,w,...] to [H,W,...] with PIL's sampling (pixel centres)."""
    h, w = image.shape[:2]
    out_h, out_w = size_hw
    if (h, w) == (out_h, out_w):
        return image
    rows = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.int64), w - 1)
    return image[rows[:, None], cols[None, :]]


def encode_maskige(
    masks: np.ndarray,
    size_hw: tuple[int, int] | None = None,
    palette: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Maskige uint8 [H,W,3] of bool masks [K,h,w], resized NEAREST to ``size_hw`` (default: mask size).

    Returns (maskige, number of masks dropped beyond the palette).
    """
    palette = ade20k_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    labels, dropped = label_map(masks, max_labels=len(palette) - 1)
    if size_hw is not None:
        labels = nearest_resize(labels, size_hw)
    return palette[labels], dropped


def exclusive_masks(masks: np.ndarray, n_labels: int | None = None) -> np.ndarray:
    """One-hot label channels c bool [N+1,H,W]: channel k is on where the label is k (0 = uncovered).

    N defaults to the number of masks (the paper pads K masks to a fixed N with zero masks;
    padding channels stay all False).
    """
    masks = _check_masks(masks)
    n = masks.shape[0] if n_labels is None else n_labels
    if n < masks.shape[0]:
        raise ValueError(f"n_labels={n} is smaller than the number of masks {masks.shape[0]}")
    labels, _ = label_map(masks, max_labels=max(n, masks.shape[0]))
    return labels[None] == np.arange(n + 1)[:, None, None]


def colour_matrix(n_labels: int, palette: np.ndarray | None = None) -> np.ndarray:
    """A float32 [N+1,3]: row k = colour of label k (palette row k). N must fit the palette."""
    palette = ade20k_palette() if palette is None else np.asarray(palette)
    if n_labels + 1 > len(palette):
        raise ValueError(f"{n_labels} labels need {n_labels + 1} palette rows, the palette has {len(palette)}")
    return palette[: n_labels + 1].astype(np.float32)


def apply_colour_matrix(channels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """X(c) = cA: channels [N,H,W] (any real values) times A [N,3] -> float32 [H,W,3]."""
    channels = np.asarray(channels, dtype=np.float32)
    if channels.shape[0] != matrix.shape[0]:
        raise ValueError(f"{channels.shape[0]} channels but A has {matrix.shape[0]} rows")
    return np.einsum("khw,kc->hwc", channels, np.asarray(matrix, dtype=np.float32))
