"""COMBO's published maskiges as a proposal backend (``proposals.backend: precomputed``).

COMBO (yannqi/COMBO-AVS) publishes the maskiges of S4, MS3 and AVSS as PNG trees. Its
``avs_tools/pre_mask2rgb`` scripts write one palette PNG per frame (label map resized NEAREST
to 224x224, ``putpalette`` with the 150-row ADE20K palette) and its dataset registration reads
them at (``{frame}`` = the frame file's name without extension)::

    Single-source/s4_data/pre_SAM_mask/{split}/{category}/{name}/{name}_{k}_mask_color.png    k = 1..5
    Multi-sources/ms3_data/pre_SAM_mask/{video}/{video}.mp4_{k}_mask_color.png                k = 1..5
    AVSBench_semantic/pre_SAM_mask/AVSBench_semantic/{label}/{uid}/processed_frames/{i}_mask_color.png

(``mask_precess_ss.py`` writes AVSS under ``frames/`` while the registration reads
``processed_frames/``: both are accepted, ``processed_frames`` first.)

``proposals.checkpoint`` names the tree: the release folder (``Single-source``, ``Multi-sources``,
``AVSBench_semantic``), its ``s4_data`` / ``ms3_data``, or the ``pre_SAM_mask`` folder itself.
Every maskige is checked: palette rows equal ADE20K's, indices inside the 150 rows, size 224x224
or the extracted frame size (then resized NEAREST to the frame size). A missing or bad frame
fails its video (listed in the failures file); the others are written.

Output: the proposals shard of :mod:`pipeline.proposals.shard` (``maskige`` uint8 [T,H,W,3],
``mask_counts`` int32 [T] = labels present per frame, ``dropped_masks`` int32 [T] = 0), so
training reads it like any other backend's.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline.failures import FailureLog
from pipeline.feature_record import record_attrs
from pipeline.params import params_hash
from pipeline.proposals.cache import MASKIGE_FORMAT_VERSION
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.maskige import nearest_resize
from pipeline.proposals.palette import ade20k_palette
from pipeline.shards import CONTENT_DIGEST, SOURCE_DIGEST, ShardReader, ShardWriter

NAME = "precomputed"
SUFFIX = "_mask_color.png"
COMBO_SIZE = (224, 224)
KIND = "proposals"


class PrecomputedError(ValueError):
    """A maskige file is missing or not one COMBO's scripts write; the message names the file."""


def maskige_tree(root: str | Path, task: str) -> Path:
    """The ``pre_SAM_mask`` folder for ``task`` (s4, ms3, avss) under any accepted root."""
    root = Path(root)
    candidates = {
        "s4": [root / "s4_data" / "pre_SAM_mask", root / "pre_SAM_mask", root],
        "ms3": [root / "ms3_data" / "pre_SAM_mask", root / "pre_SAM_mask", root],
        "avss": [root / "pre_SAM_mask" / "AVSBench_semantic", root / "AVSBench_semantic", root],
    }.get(task)
    if candidates is None:
        raise PrecomputedError(f"precomputed maskiges exist for AVSBench s4, ms3 and avss videos, not task {task!r}")
    return next((c for c in candidates if c.is_dir()), candidates[-1])


def maskige_paths(tree: Path, task: str, video_id: str, split: str, num_frames: int) -> list[Path]:
    """The maskige file of each frame of a video (manifest id: S4 ``category/name``, MS3 ``video``,
    AVSS ``label/uid``), as COMBO's registration names them."""
    parts = PurePosixPath(video_id).parts
    if task == "s4":
        category, name = parts
        folder = tree / split / category / name
        return [folder / f"{name}_{k}{SUFFIX}" for k in range(1, num_frames + 1)]
    if task == "ms3":
        return [tree / video_id / f"{video_id}.mp4_{k}{SUFFIX}" for k in range(1, num_frames + 1)]
    label, uid = parts
    folder = tree / label / uid / "processed_frames"
    if not folder.is_dir() and (tree / label / uid / "frames").is_dir():
        folder = tree / label / uid / "frames"
    return [folder / f"{i}{SUFFIX}" for i in range(num_frames)]


def _palette_indices(img, path: Path, palette: np.ndarray) -> np.ndarray:
    """Label indices [H,W] of a palette PNG, checking that its palette is ADE20K's (as COMBO writes)."""
    stored = np.frombuffer(img.palette.tobytes(), np.uint8).reshape(-1, 3)
    if stored.shape[0] < len(palette) or not np.array_equal(stored[: len(palette)], palette):
        raise PrecomputedError(f"{path}: palette is not the ADE20K palette COMBO writes")
    index = np.asarray(img)
    if int(index.max()) >= len(palette):
        raise PrecomputedError(f"{path}: label {int(index.max())} beyond the {len(palette)}-row palette")
    return index


def _rgb_indices(rgb: np.ndarray, path: Path, palette: np.ndarray) -> np.ndarray:
    """Label indices [H,W] of an RGB maskige (a converted copy); every colour must be a palette row."""
    codes = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniques, inverse = np.unique(flat, return_inverse=True)
    rows = {int(c): k for k, c in enumerate(codes)}
    missing = [int(u) for u in uniques if int(u) not in rows]
    if missing:
        colour = ((missing[0] >> 16) & 255, (missing[0] >> 8) & 255, missing[0] & 255)
        raise PrecomputedError(f"{path}: colour {colour} is not in the ADE20K palette")
    return np.array([rows[int(u)] for u in uniques], np.int64)[inverse].reshape(flat.shape)


def read_maskige(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """One maskige as uint8 [H,W,3] at ``size`` (H, W) and the number of mask labels it shows."""
    from PIL import Image

    if not path.is_file():
        raise PrecomputedError(f"{path}: maskige missing")
    palette = ade20k_palette()
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                index = _palette_indices(img, path, palette)
            else:
                index = _rgb_indices(np.asarray(img.convert("RGB")), path, palette)
    except OSError as exc:
        raise PrecomputedError(f"{path}: unreadable maskige ({exc})") from exc
    shape = tuple(index.shape)
    if shape not in (tuple(size), COMBO_SIZE):
        raise PrecomputedError(
            f"{path}: size {shape[1]}x{shape[0]}, expected {COMBO_SIZE[1]}x{COMBO_SIZE[0]} "
            f"or the frame size {size[1]}x{size[0]}"
        )
    if shape != tuple(size):
        index = nearest_resize(index, tuple(size))
    labels_present = int(np.count_nonzero(np.bincount(index.ravel())[1:]))
    return palette[index], labels_present


def read_video(
    tree: Path, task: str, video_id: str, split: str, size: tuple[int, int], num_frames: int
) -> dict[str, np.ndarray]:
    """The proposals-shard arrays of one video; the first missing or bad frame raises."""
    maskiges, counts = [], []
    for path in maskige_paths(tree, task, video_id, split, num_frames):
        maskige, count = read_maskige(path, size)
        maskiges.append(maskige)
        counts.append(count)
    return {
        "maskige": np.stack(maskiges),
        "mask_counts": np.asarray(counts, np.int32),
        "dropped_masks": np.zeros(num_frames, np.int32),
    }


class PrecomputedBackend:
    """Registry entry: maskiges are read per video (:func:`precomputed_shard`), not computed per frame."""

    name = NAME
    checkpoint_sha256 = ""

    def __init__(self, params: ProposalParams) -> None:
        if not params.checkpoint:
            raise PrecomputedError(
                "proposals.backend precomputed: set proposals.checkpoint to COMBO's maskige tree "
                "(the release folder or its pre_SAM_mask folder)"
            )
        self.checkpoint = str(params.checkpoint)

    def propose(self, frame: np.ndarray):
        raise PrecomputedError(
            "the precomputed backend reads COMBO's maskige files per video; it cannot propose masks for a bare frame"
        )


def _provenance(params: ProposalParams, dataset: str, extract_path: Path) -> dict[str, Any]:
    """The proposals shard's file attributes, with the typed ``proposals_params`` record training copies."""
    return {
        "dataset": dataset,
        "backend": NAME,
        "checkpoint": str(params.checkpoint),
        "checkpoint_sha256": "",
        **record_attrs(KIND, params),
        "proposal_settings": {"backend": NAME},
        "maskige_format": MASKIGE_FORMAT_VERSION,
        "source_shard": str(extract_path),
    }


def precomputed_shard(
    extract_path: Path, out_path: Path, params: ProposalParams, dataset: str = "", progress: bool = True
) -> FailureLog:
    """Write the proposals shard of every video of an extraction shard from COMBO's maskige PNGs."""
    from tqdm.auto import tqdm

    root = PrecomputedBackend(params).checkpoint
    failures = FailureLog(stage=KIND)
    shard_hash = params_hash({"backend": NAME, "format": MASKIGE_FORMAT_VERSION})
    with (
        ShardReader(extract_path) as reader,
        ShardWriter(
            out_path, kind=KIND, params_hash=shard_hash, attrs=_provenance(params, dataset, extract_path)
        ) as writer,
    ):
        for video_id in tqdm(reader.video_ids(), desc=f"maskiges {out_path.stem}", disable=not progress):
            attrs = reader.video_attrs(video_id)
            frames = reader.read(video_id, "frames")
            try:
                arrays = read_video(
                    maskige_tree(root, attrs.get("task", "")),
                    attrs.get("task", ""),
                    video_id,
                    attrs.get("split", ""),
                    frames.shape[1:3],
                    frames.shape[0],
                )
            except (PrecomputedError, ValueError) as exc:
                failures.add(video_id, str(exc), source=root)
                continue
            made_from = {SOURCE_DIGEST: attrs.get(CONTENT_DIGEST, "")}  # the frames these maskiges are paired with
            writer.write_video(video_id, arrays, {"cache_hit": False, "num_frames": int(frames.shape[0]), **made_from})
    return failures
