"""Maskige encoding: COMBO's rule, the X(c) = cA view, the palette limit, NEAREST resize."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.proposals.maskige import (
    MAX_LABELS,
    apply_colour_matrix,
    colour_matrix,
    encode_maskige,
    exclusive_masks,
    keep_for_palette,
    label_map,
    nearest_resize,
)
from pipeline.proposals.palette import ade20k_palette

PALETTE_JSON = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "ade20k_palette.json"


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _combo_loop(masks: np.ndarray) -> np.ndarray:
    """COMBO's rule written the slow obvious way: paint largest first, smaller ones on top."""
    areas = masks.reshape(len(masks), -1).sum(1)
    order = np.argsort(areas, kind="stable")  # rank 0 = smallest
    labels = np.zeros(masks.shape[1:], np.int32)
    for rank in reversed(range(len(order))):
        labels[masks[order[rank]]] = rank + 1
    return labels


def test_palette_matches_reference_file():
    palette = ade20k_palette()
    assert palette.shape == (150, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [120, 120, 120]
    assert palette.tolist() == json.loads(PALETTE_JSON.read_text())


def test_smallest_covering_mask_wins_and_uncovered_is_zero():
    big = np.zeros((6, 6), bool)
    big[:4, :4] = True
    small = np.zeros((6, 6), bool)
    small[1:3, 1:3] = True
    other = np.zeros((6, 6), bool)
    other[5, 5] = True  # area 1: rank 0
    labels, dropped = label_map(np.stack([big, small, other]))
    assert dropped == 0
    assert labels[5, 5] == 1 and labels[1, 1] == 2 and labels[0, 0] == 3 and labels[4, 4] == 0 and labels[0, 5] == 0
    maskige, _ = encode_maskige(np.stack([big, small, other]))
    palette = ade20k_palette()
    assert maskige.dtype == np.uint8 and maskige.shape == (6, 6, 3)
    assert (maskige[1, 1] == palette[2]).all() and (maskige[4, 4] == palette[0]).all()


def test_random_overlapping_masks_match_the_painting_loop():
    rng = np.random.default_rng(0)
    masks = np.stack([_disc(40, 50, *rng.uniform(0, 40, 2), rng.uniform(2, 20)) for _ in range(30)])
    labels, _ = label_map(masks)
    assert np.array_equal(labels, _combo_loop(masks))


def test_area_ties_rank_by_index():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b = np.zeros((4, 4), bool)
    b[1:3, 1:3] = True  # same area, overlaps a at (1,1)
    labels, _ = label_map(np.stack([a, b]))
    assert labels[1, 1] == 1 and labels[2, 2] == 2


def test_encoding_equals_linear_map_cA():
    rng = np.random.default_rng(1)
    masks = np.stack([_disc(32, 32, *rng.uniform(0, 32, 2), rng.uniform(3, 14)) for _ in range(12)])
    n_pad = 20  # the paper pads K masks to a fixed N with zero masks
    channels = exclusive_masks(masks, n_labels=n_pad)
    assert channels.shape == (n_pad + 1, 32, 32)
    assert (channels.sum(0) == 1).all()  # exactly one label per pixel
    assert not channels[len(masks) + 1 :].any()  # padding channels stay empty
    via_matrix = apply_colour_matrix(channels, colour_matrix(n_pad))
    maskige, _ = encode_maskige(masks)
    assert np.array_equal(via_matrix.astype(np.uint8), maskige)


def test_empty_mask_set_is_all_background():
    maskige, dropped = encode_maskige(np.zeros((0, 5, 7), bool), size_hw=(10, 14))
    assert maskige.shape == (10, 14, 3) and dropped == 0
    assert (maskige == ade20k_palette()[0]).all()


def test_nearest_resize_keeps_labels_and_matches_pil_sampling():
    labels = np.arange(16).reshape(4, 4)
    up = nearest_resize(labels, (8, 8))
    assert np.array_equal(up[::2, ::2], labels) and set(np.unique(up)) == set(range(16))
    down = nearest_resize(np.arange(64).reshape(8, 8), (4, 4))
    assert np.array_equal(down, np.arange(64).reshape(8, 8)[1::2, 1::2])  # pixel centres, as PIL NEAREST
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2] = True
    maskige, _ = encode_maskige(masks, size_hw=(224, 224))
    assert maskige.shape == (224, 224, 3)
    assert len(np.unique(maskige.reshape(-1, 3), axis=0)) == 2


def test_more_masks_than_palette_rows_drop_the_smallest():
    n = MAX_LABELS + 11  # 160 masks: COMBO would index past the 150-row palette
    h, w = 20, 160
    masks = np.zeros((n, h, w), bool)
    for i in range(n):  # mask i covers column i and a band whose height grows with i: area grows with i
        masks[i, : 1 + i % h, i] = True
        masks[i, 0, : i + 1] = True
    keep, dropped = keep_for_palette(masks)
    areas = masks.reshape(n, -1).sum(1)
    assert dropped == 11 and len(keep) == MAX_LABELS
    assert areas[keep].min() >= np.sort(areas)[11]  # the 11 smallest are the ones dropped
    labels, dropped_again = label_map(masks)
    assert dropped_again == 11 and labels.max() == MAX_LABELS
    maskige, dropped_too = encode_maskige(masks)
    assert dropped_too == 11
    assert np.array_equal(maskige, ade20k_palette()[labels])
    # exactly the 149 kept masks, encoded on their own, give the same image
    same, _ = encode_maskige(masks[keep])
    assert np.array_equal(same, maskige)


def test_at_the_limit_nothing_is_dropped():
    masks = np.zeros((MAX_LABELS, 1, MAX_LABELS), bool)
    masks[np.arange(MAX_LABELS), 0, np.arange(MAX_LABELS)] = True
    labels, dropped = label_map(masks)
    assert dropped == 0 and sorted(labels[0].tolist()) == list(range(1, MAX_LABELS + 1))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[K,H,W\]"):
        label_map(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="palette"):
        colour_matrix(150)
    with pytest.raises(ValueError, match="rows"):
        apply_colour_matrix(np.zeros((3, 2, 2)), colour_matrix(5))
