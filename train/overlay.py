"""Colourising label maps and drawing them over frames, in a way a person can read on any frame.

A mask is drawn as a tint *and* an outline: the tint alone vanishes on objects of its own colour
(the old white tint on pale objects), while a two-pixel outline, dark outside and bright inside,
stays visible on any background. Binary masks use one saturated colour; semantic masks use the
AVSBench VOC palette. Every function takes and returns uint8 numpy images ([H,W,3]); nothing
here reads or writes files except :func:`write_strip_png`, which goes through
``pipeline.atomic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pipeline.atomic import atomic_path
from pipeline.labels import voc_palette

# Magenta-pink: rare in natural scenes and far from both white and black, so the tint shows on
# pale and dark objects alike (the outline does the rest).
BINARY_COLOUR = np.array([255, 0, 170], np.uint8)
OUTLINE_DARK = np.array([0, 0, 0], np.uint8)
OUTLINE_BRIGHT = np.array([255, 255, 0], np.uint8)
TINT_ALPHA = 0.45
HEADER_PX = 22  # height of the label row drawn above the columns of a strip PNG


def colourise(labels: np.ndarray, binary: bool) -> np.ndarray:
    """int [H,W] -> uint8 [H,W,3]: binary foreground in BINARY_COLOUR (background black); semantic
    ids in the AVSBench VOC palette."""
    if binary:
        out = np.zeros((*labels.shape, 3), np.uint8)
        out[labels > 0] = BINARY_COLOUR
        return out
    return voc_palette(256)[labels.astype(np.uint8)]


def outlines(labels: np.ndarray, width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """int [H,W] -> (inner, outer) bool [H,W]: the ring of ``width`` pixels just inside every region
    boundary (between any two different labels, background included) and the ring just outside it."""
    edges = np.zeros(labels.shape, bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    edges[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edges[:-1, :] |= labels[1:, :] != labels[:-1, :]
    if width > 1:
        edges = ndimage.binary_dilation(edges, iterations=width - 1)
    foreground = labels > 0
    return edges & foreground, edges & ~foreground


def outline_width(shape: tuple[int, ...]) -> int:
    """Ring width for an image of ``shape`` [H,W,...]: about min(H, W) / 112 px (2 px at 224), at least 1."""
    return max(1, round(min(shape[:2]) / 112))


def draw_mask(frame: np.ndarray, labels: np.ndarray, binary: bool, alpha: float = TINT_ALPHA) -> np.ndarray:
    """uint8 frame [H,W,3] + labels int [H,W] (same size) -> uint8 [H,W,3]: tinted foreground with a
    bright inner and dark outer outline."""
    fg = (labels > 0)[..., None]
    tinted = np.where(fg, frame * (1 - alpha) + colourise(labels, binary) * alpha, frame).astype(np.uint8)
    inner, outer = outlines(labels, outline_width(labels.shape))
    tinted[outer] = OUTLINE_DARK
    tinted[inner] = OUTLINE_BRIGHT if binary else colourise(labels, False)[inner] // 2 + 127
    return tinted


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h,w,3] -> uint8 [H,W,3] at ``size`` = (H, W), bilinear (a no-op at the same size)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def unlabelled(frame: np.ndarray) -> np.ndarray:
    """A frame with no ground truth: darkened, so an empty GT column is not read as 'no object'."""
    return (frame * 0.35).astype(np.uint8)


def header(labels: Sequence[str], tile_w: int, height: int = HEADER_PX) -> np.ndarray:
    """uint8 [height, len(labels) * tile_w, 3]: the column names, white on dark grey."""
    img = Image.new("RGB", (tile_w * len(labels), height), (40, 40, 40))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=14)  # Pillow's bundled scalable font (bitmap without FreeType)
    for i, text in enumerate(labels):
        while len(text) > 1 and draw.textlength(text, font=font) > tile_w - 6:  # never run into the next column
            text = text[:-2] + "."
        draw.text((i * tile_w + 4, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def write_strip_png(path: Path, columns: Sequence[str], rows: Sequence[Sequence[np.ndarray]]) -> None:
    """One PNG: a header with the column names, then one row per second; ``rows[t]`` holds one uint8
    [H,W,3] tile per column (all the same size)."""
    tile_w = rows[0][0].shape[1]
    image = np.concatenate([header(columns, tile_w)] + [np.concatenate(row, axis=1) for row in rows], axis=0)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp)
