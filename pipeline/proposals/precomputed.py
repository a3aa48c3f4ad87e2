"""COMBO's published maskiges (``pre_SAM_mask`` PNG trees) as a maskige source of one dataset.

COMBO (yannqi/COMBO-AVS) publishes the maskiges of S4, MS3 and AVSS as PNG trees. Its
``avs_tools/pre_mask2rgb`` scripts write one palette PNG per frame (label map = 1 + area rank of
the smallest covering mask, 0 uncovered, ``putpalette`` with the 150-row ADE20K palette; S4 and MS3
resized NEAREST to 224x224, AVSS at the frame's own size under ``frames/``), and its dataset
registration reads them at (``{frame}`` = the frame file's name without extension)::

    s4_data/pre_SAM_mask/{split}/{category}/{name}/{name}_{k}_mask_color.png      k = 1..5
    ms3_data/pre_SAM_mask/{video}/{video}.mp4_{k}_mask_color.png                  k = 1..5
    AVSBench_semantic/pre_SAM_mask/AVSBench_semantic/{label}/{uid}/processed_frames/{i}_mask_color.png

AVSS comes in two forms: ``frames/{i}_mask_color.png`` (``mask_precess_ss.py``: palette PNGs at the
frame's own size, e.g. 320x240) and ``processed_frames/`` (``process_avssimg2fixsize.py``: those
converted to RGB and brought to 224x224 NEAREST, train frames by short side + centre crop, others
stretched). ``processed_frames`` is read first. A frame-size maskige is fitted to the extracted frame
the way that script fits it (and the way the extraction fitted the frame: :func:`pipeline.labels.fit_image`).

Labels beyond the palette (COMBO's uint8 label maps reach 255; the palette has 150 rows) are read the
way COMBO's loader reads them (detectron2 ``read_image`` = PIL ``convert("RGB")``): palette entries the
PNG does not have are black (0, 0, 0); an RGB maskige may therefore show black. They are kept, counted
in ``dropped_masks`` and reported as one warning per video. Any other colour, a palette that is not
ADE20K's, or a size that is neither 224x224 nor the frame's own fails the video (one failures row naming
the file); the other videos are written.

Reruns (:class:`ComboMaskigeTree` with ``reuse``): a video is copied from the previous shard when its
extracted frames (``source_digest``) and its maskige files (``maskige_files_digest``: each PNG's name and
sha256, through a stat-keyed :class:`~pipeline.manifest.HashCache`, and its manifest row) are the ones
stored, and its stored bytes still match their ``stored_digest``; a shard whose every video is so is
kept as it is, not rewritten.

Output: the proposals shard of :mod:`pipeline.proposals.shard` (``maskige`` uint8 [T,H,W,3],
``mask_counts`` int32 [T] = labels shown per frame, ``dropped_masks`` int32 [T] = labels beyond the
palette per frame), so training reads it like computed maskiges.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.failures import FailureLog
from pipeline.hashing import sha256_of_named_digests
from pipeline.labels import fit_image
from pipeline.manifest import HashCache, ManifestRow, read_manifest
from pipeline.manifest.paths import is_plain_relative, joined, relative_name
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.maskige import nearest_resize
from pipeline.proposals.palette import ade20k_palette
from pipeline.proposals.shard import KIND, shard_hash, shard_provenance
from pipeline.shards import (
    CONTENT_DIGEST,
    SHAPES,
    SOURCE_DIGEST,
    STORED_DIGEST,
    PreviousShard,
    ShardError,
    ShardReader,
    ShardWriter,
    input_digest,
    record_file_digest,
)

NAME = "combo_pre_sam_mask"
READER_VERSION = 2  # bump when what is read from a tree changes (part of the shard's params hash)
SUFFIX = "_mask_color.png"
COMBO_SIZE = (224, 224)  # (H, W) of COMBO's S4 / MS3 / processed_frames maskiges
BEYOND = 150  # index of "a label beyond the palette" in the decoded index maps (black, as PIL shows it)
BLACK = (0, 0, 0)
MASKIGE_FILES_DIGEST = "maskige_files_digest"  # video attribute: what maskige_files_digest() gave

# Where COMBO's trees sit under the folders a user may name (deepest first): COMBO's AVS_dataset/ root
# (also the layout its pre_mask2rgb scripts write under their --save_dir), the release folder, its data folder.
_TREE_CANDIDATES = {
    "s4": (
        "AVSBench_object/Single-source/s4_data/pre_SAM_mask",
        "Single-source/s4_data/pre_SAM_mask",
        "s4_data/pre_SAM_mask",
        "pre_SAM_mask",
    ),
    "ms3": (
        "AVSBench_object/Multi-sources/ms3_data/pre_SAM_mask",
        "Multi-sources/ms3_data/pre_SAM_mask",
        "ms3_data/pre_SAM_mask",
        "pre_SAM_mask",
    ),
    "avss": ("AVSBench_semantic/pre_SAM_mask/AVSBench_semantic", "pre_SAM_mask/AVSBench_semantic", "AVSBench_semantic"),
}


class PrecomputedError(ValueError):
    """A maskige file is missing or not one COMBO's scripts write; the message names the file."""


def combo_recipe() -> ProposalParams:
    """The feature record of COMBO's maskiges: Semantic-SAM SwinL with COMBO's generator settings (the
    ``semantic_sam`` defaults), so that ``avs predict`` can make the same kind of maskige for a new video."""
    return ProposalParams(backend="semantic_sam", model_type="L", cache_dir="")


def maskige_tree(root: str | Path, task: str) -> Path:
    """The folder holding ``task``'s (s4, ms3, avss) maskiges under any accepted root."""
    root = Path(root)
    if task not in _TREE_CANDIDATES:
        raise PrecomputedError(f"COMBO's maskiges exist for AVSBench s4, ms3 and avss videos, not task {task!r}")
    return next((root / c for c in _TREE_CANDIDATES[task] if (root / c).is_dir()), root)


def maskige_paths(tree: str | Path, task: str, video_id: str, split: str, num_frames: int) -> list[Path]:
    """The maskige file of each frame of a video (manifest id: S4 ``category/name``, MS3 ``video``,
    AVSS ``label/uid``), as COMBO's registration (AVSS ``frames/`` form: ``mask_precess_ss.py``) names them."""
    return [Path(file) for file in maskige_files(str(Path(tree)), task, video_id, split, num_frames)]


def maskige_files(tree: str, task: str, video_id: str, split: str, num_frames: int) -> list[str]:
    """:func:`maskige_paths` as strings (``tree``: a ``str(Path)``): the plan names ~25,000 files per
    dataset, and parsing a ``Path`` for each costs more than the ``stat`` its hash lookup takes."""
    parts = _id_parts(video_id)
    if task == "s4":
        category, name = parts
        return [joined(tree, split, category, name, f"{name}_{k}{SUFFIX}") for k in range(1, num_frames + 1)]
    if task == "ms3":
        return [joined(tree, video_id, f"{video_id}.mp4_{k}{SUFFIX}") for k in range(1, num_frames + 1)]
    label, uid = parts
    folder = joined(tree, label, uid, "processed_frames")
    if not Path(folder).is_dir() and Path(joined(tree, label, uid, "frames")).is_dir():
        folder = joined(tree, label, uid, "frames")
    return [joined(folder, f"{i}{SUFFIX}") for i in range(num_frames)]


def _id_parts(video_id: str) -> tuple[str, ...]:
    """``PurePosixPath(video_id).parts``, split on ``/`` where that gives the same answer."""
    return tuple(video_id.split("/")) if is_plain_relative(video_id) else PurePosixPath(video_id).parts


def _codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _palette_indices(img, path: Path, palette: np.ndarray) -> np.ndarray:
    """Index map [h,w] of a palette PNG (its palette must start with ADE20K's rows); indices the PNG's
    palette lacks (COMBO's labels >= 150) become :data:`BEYOND`."""
    stored = np.asarray(img.getpalette("RGB") or [], np.uint8).reshape(-1, 3)  # RGB rows whatever the mode
    if stored.shape[0] < len(palette) or not np.array_equal(stored[: len(palette)], palette):
        raise PrecomputedError(f"{path}: palette is not the ADE20K palette COMBO writes")
    index = np.asarray(img).astype(np.int64)
    beyond = index >= len(palette)
    if beyond.any() and np.any(stored[len(palette) :] != 0):
        raise PrecomputedError(f"{path}: palette has non-black rows beyond ADE20K's {len(palette)}")
    return np.where(beyond, BEYOND, index)


def _rgb_indices(rgb: np.ndarray, path: Path, palette: np.ndarray) -> np.ndarray:
    """Index map [h,w] of an RGB maskige (``processed_frames``): each colour a palette row, or black
    (labels beyond the palette, as ``process_avssimg2fixsize.py``'s ``convert("RGB")`` wrote them)."""
    rows = {int(c): k for k, c in enumerate(_codes(palette))}
    rows[0] = BEYOND  # black: no ADE20K row is black
    uniques, inverse = np.unique(_codes(rgb), return_inverse=True)
    missing = [int(u) for u in uniques if int(u) not in rows]
    if missing:
        colour = ((missing[0] >> 16) & 255, (missing[0] >> 8) & 255, missing[0] & 255)
        raise PrecomputedError(f"{path}: colour {colour} is not in the ADE20K palette")
    return np.array([rows[int(u)] for u in uniques], np.int64)[inverse].reshape(rgb.shape[:2])


def _decode(path: Path, palette: np.ndarray) -> np.ndarray:
    """The index map [h,w] (0..149, or BEYOND) of one maskige file."""
    from PIL import Image

    if not path.is_file():
        raise PrecomputedError(f"{path}: maskige missing")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                return _palette_indices(img, path, palette)
            return _rgb_indices(np.asarray(img.convert("RGB")), path, palette)
    except OSError as exc:
        raise PrecomputedError(f"{path}: unreadable maskige ({exc})") from exc


@dataclass(frozen=True)
class FrameGeometry:
    """How a maskige reaches the extracted frame: ``size`` (H, W) of the frame, ``fit`` (stretch | crop) the
    extraction used, and ``source_size`` (H, W) of the frame image it came from (None: unknown)."""

    size: tuple[int, int]
    fit: str = "stretch"
    source_size: tuple[int, int] | None = None


def _fit(index: np.ndarray, path: Path, geometry: FrameGeometry) -> np.ndarray:
    """``index`` [h,w] at the frame size: as is, stretched from COMBO's 224x224, or (a frame-size
    maskige) fitted like the frame itself, NEAREST."""
    from PIL import Image

    shape = tuple(index.shape)
    if shape == tuple(geometry.size):
        return index
    if shape == COMBO_SIZE:
        return nearest_resize(index, tuple(geometry.size))
    if geometry.source_size is not None and shape != tuple(geometry.source_size):
        h, w = geometry.source_size
        raise PrecomputedError(
            f"{path}: size {shape[1]}x{shape[0]}, expected {COMBO_SIZE[1]}x{COMBO_SIZE[0]} (COMBO's) "
            f"or the frame's own {w}x{h}"
        )
    fitted = fit_image(Image.fromarray(index.astype(np.uint8)), geometry.size, geometry.fit, is_label=True)
    return np.asarray(fitted).astype(np.int64)


def read_maskige(path: Path, geometry: FrameGeometry) -> tuple[np.ndarray, int, int, int]:
    """One maskige: (uint8 [H,W,3] at the frame size, labels shown, labels beyond the palette shown,
    pixels of those)."""
    palette = ade20k_palette()
    index = _fit(_decode(path, palette), path, geometry)
    colours = np.concatenate([palette, np.array([BLACK], np.uint8)])
    present = np.flatnonzero(np.bincount(index.ravel(), minlength=BEYOND + 1))
    beyond_pixels = int(np.count_nonzero(index == BEYOND))
    return colours[index], int(np.count_nonzero(present)), int(beyond_pixels > 0), beyond_pixels


def geometry_for(row: ManifestRow | None, split: str, size: tuple[int, int]) -> FrameGeometry:
    """The extraction's geometry for a video: its manifest row's fit (frame images: ``frame_fit``; a source
    video is stretched) and frame image size; without a row, COMBO's rule (train cropped, others stretched)."""
    if row is None:
        return FrameGeometry(size, "crop" if split == "train" else "stretch")
    if row.source_video or not row.frame_paths:
        return FrameGeometry(size, "stretch")
    return FrameGeometry(size, row.frame_fit, _image_size(Path(row.frame_paths[0])))


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except OSError:
        return None  # the extraction read it; a frame image gone since is no reason to refuse its maskige


def read_video(
    tree: Path, task: str, video_id: str, split: str, geometry: FrameGeometry, num_frames: int
) -> tuple[dict[str, np.ndarray], int]:
    """The proposals-shard arrays of one video and its pixels beyond the palette; the first bad frame raises."""
    maskiges, counts, dropped, beyond = [], [], [], 0
    for path in maskige_paths(tree, task, video_id, split, num_frames):
        maskige, count, beyond_labels, beyond_pixels = read_maskige(path, geometry)
        maskiges.append(maskige)
        counts.append(count)
        dropped.append(beyond_labels)
        beyond += beyond_pixels
    arrays = {
        "maskige": np.stack(maskiges),
        "mask_counts": np.asarray(counts, np.int32),
        "dropped_masks": np.asarray(dropped, np.int32),
    }
    return arrays, beyond


def maskige_files_digest(
    paths: list[str] | list[Path], tree: str | Path, row: ManifestRow | None, hashes: HashCache
) -> str:
    """What one video's maskiges are made from, as one digest: each maskige file's name (relative to the
    tree) and sha256 (through the stat-keyed ``hashes``: an unchanged file is not read again), and the
    manifest row that says how its frames were fitted. ``paths``: as :func:`maskige_files` (or
    :func:`maskige_paths`) gives them. Raises OSError when a file is missing."""
    tree = os.fspath(tree)
    named = [(relative_name(os.fspath(path), tree), hashes.sha256(path)) for path in paths]
    named.append((":manifest row", input_digest(row_record(row)) if row is not None else ""))  # no PNG is named so
    return sha256_of_named_digests(named)


def row_record(row: ManifestRow) -> dict:
    """``dataclasses.asdict(row)`` for a row of plain str / int columns (no deep copy: ~10x faster)."""
    return {name: getattr(row, name) for name in _ROW_COLUMNS}


_ROW_COLUMNS = tuple(column.name for column in fields(ManifestRow))


@dataclass(frozen=True)
class PlannedVideo:
    """One video of the extraction shard and what its maskiges would be made from (``identity``: the
    stored attributes a previous shard's video must have to be reused; an empty value: never reused)."""

    video_id: str
    task: str = ""
    split: str = ""
    frame_shape: tuple[int, ...] = ()  # (T, H, W, 3) of the extracted frames
    row: ManifestRow | None = None
    identity: dict[str, str] = field(default_factory=dict)
    error: str = ""  # the extracted video is unusable


@dataclass(frozen=True)
class ComboMaskigeTree:
    """Maskige source: one dataset's COMBO ``pre_SAM_mask`` tree (``proposals.maskige_trees``).

    ``hash_cache``: the stat-keyed sha256 cache of the tree's files ("" : in memory only); ``reuse``: copy
    the videos whose frames and maskige files are unchanged from the previous shard, and keep that shard
    as it is when every video is (:mod:`pipeline.shards.reuse`)."""

    root: str
    hash_cache: str = ""
    reuse: bool = True

    @property
    def label(self) -> str:
        return f"COMBO maskiges {self.root}"

    def write_shard(
        self,
        extract_path: Path,
        out_path: Path,
        *,
        dataset: str = "",
        manifest: Path | None = None,
        progress: bool = True,
    ) -> tuple[FailureLog, int]:
        """Write the proposals shard of every video of an extraction shard; (failures, 0 cache hits).
        ``manifest``: the shard's manifest slice, which says how each video's frames were fitted."""
        if not Path(self.root).is_dir():
            raise PrecomputedError(f"{self.root}: COMBO maskige tree not found (proposals.maskige_trees)")
        rows = read_manifest(manifest) if manifest is not None and Path(manifest).is_file() else []
        by_id = {row.video_id: row for row in rows}
        failures = FailureLog(stage=KIND)
        settings = {"source": NAME, "reader_version": READER_VERSION}
        attrs = shard_provenance(dataset, NAME, self.root, "", combo_recipe(), settings, extract_path)
        header = ShardWriter(
            out_path, kind=KIND, params_hash=shard_hash(settings, ""), attrs=attrs, index_keys=(MASKIGE_FILES_DIGEST,)
        )
        with ShardReader(extract_path) as reader:
            videos = self._plan(reader, by_id)
        with PreviousShard(out_path, header.file_attrs, enabled=self.reuse) as previous:
            index, why = previous.trusted_index()  # the fast path: the file as recorded, decided on its index
            reused = _reusable(previous, videos, index)
            if self._keep(previous, videos, reused, (index, why), failures, out_path):
                return failures, 0
            with header as writer:
                for video in tqdm_videos(videos, out_path, progress):
                    if video.video_id in reused:
                        self._warn(failures, video.video_id, previous.copy(writer, video.video_id))
                    else:
                        self._write_video(writer, video, failures)
            record_file_digest(out_path)  # after the rename: a crash in between leaves a digest that fails
            if previous.reason not in ("no previous shard", "reuse turned off"):
                checked = f" (checked per video: {why})" if index is None and previous.reader is not None else ""
                print(f"proposals {out_path.name}: {previous.summary(len(videos))}{checked}")
        return failures, 0

    def _keep(
        self,
        previous: PreviousShard,
        videos: list[PlannedVideo],
        reused: set[str],
        trusted: tuple[dict[str, dict] | None, str],
        failures: FailureLog,
        out_path: Path,
    ) -> bool:
        """Keep the previous shard as is when it holds every video, unchanged, in order. ``trusted``: its
        index when its bytes match their recorded digest, and why not. Checked per video instead, it is
        kept only when its index agrees with its videos (then its digest is recorded, so the next run
        takes the fast path); a shard without index is rewritten (copies) to gain one."""
        index, why = trusted
        ids = [video.video_id for video in videos]
        if previous.reader is None or reused != set(ids) or previous.reader.video_ids() != ids:
            return False
        if index is None:
            keys = [MASKIGE_FILES_DIGEST, SOURCE_DIGEST, STORED_DIGEST, "warnings"]
            if not previous.index_agrees(ids, keys):
                return False
            record_file_digest(out_path)
        for video_id in ids:  # the previous run's warnings, as its failures file had them
            stored = index[video_id].get("warnings") if index is not None else previous.warnings(video_id)
            self._warn(failures, video_id, list(stored or []))
        how = "" if index is not None else f" (checked per video: {why}; its digest recorded)"
        print(f"proposals {out_path.name}: all {len(videos)} videos unchanged; previous shard kept as is{how}")
        return True

    @functools.cached_property
    def _hashes(self) -> HashCache:
        """The tree's hash cache: read once per source, i.e. once per ``avs proposals`` run, for all its shards."""
        return HashCache(Path(self.hash_cache) if self.hash_cache else None)

    def _plan(self, reader: ShardReader, by_id: dict[str, ManifestRow]) -> list[PlannedVideo]:
        """Every video of the extraction shard, with its identity; saves the hash cache if it changed."""
        index = reader.index() or {}  # one read for all videos (a shard written before indexes: per video)
        trees: dict[str, str] = {}  # task -> its tree, looked up once per shard
        videos = [
            self._plan_video(reader, video_id, by_id.get(video_id), trees, index.get(video_id))
            for video_id in reader.video_ids()
        ]
        self._hashes.save()  # atomic; only when this shard (or the read) changed it: a crash keeps earlier shards'
        return videos

    def _plan_video(
        self, reader: ShardReader, video_id: str, row: ManifestRow | None, trees: dict[str, str], entry: dict | None
    ) -> PlannedVideo:
        try:
            if entry is not None and "frames" in entry.get(SHAPES, {}):
                attrs, shape = entry, tuple(entry[SHAPES]["frames"])
            else:
                attrs = reader.video_attrs(video_id, ["task", "split", CONTENT_DIGEST])
                shape = reader.shape(video_id, "frames")
        except ShardError as exc:
            return PlannedVideo(video_id, error=str(exc))
        task, split = str(attrs.get("task", "")), str(attrs.get("split", ""))
        try:
            if task not in trees:
                trees[task] = str(maskige_tree(self.root, task))
            paths = maskige_files(trees[task], task, video_id, split, shape[0])
            files = maskige_files_digest(paths, trees[task], row, self._hashes)
        except (PrecomputedError, ValueError, OSError):
            files = ""  # not reusable; reading the maskiges names the problem
        identity = {SOURCE_DIGEST: str(attrs.get(CONTENT_DIGEST, "")), MASKIGE_FILES_DIGEST: files}
        return PlannedVideo(video_id, task, split, tuple(shape), row, identity)

    def _warn(self, failures: FailureLog, video_id: str, warnings: list[str]) -> None:
        for warning in warnings:
            failures.warn(video_id, warning, source=self.root)

    def _write_video(self, writer: ShardWriter, video: PlannedVideo, failures: FailureLog) -> None:
        if video.error:
            failures.add(video.video_id, video.error, source=self.root)
            return
        task, split, num_frames = video.task, video.split, video.frame_shape[0]
        geometry = geometry_for(video.row, split, tuple(video.frame_shape[1:3]))
        try:
            arrays, beyond = read_video(
                maskige_tree(self.root, task), task, video.video_id, split, geometry, num_frames
            )
        except (PrecomputedError, ValueError) as exc:
            failures.add(video.video_id, str(exc), source=self.root)
            return
        warnings = [_beyond_warning(beyond)] if beyond else []
        self._warn(failures, video.video_id, warnings)
        # identity: the frames these maskiges are paired with (source_digest) and the files they came from
        writer.write_video(
            video.video_id,
            arrays,
            {"cache_hit": False, "num_frames": num_frames, **video.identity, "warnings": warnings},
        )
        writer.seal_video(video.video_id)  # a rerun checks the stored bytes before reusing them


def _beyond_warning(pixels: int) -> str:
    return f"{pixels} maskige pixel(s) of labels beyond the {BEYOND}-row palette read as black, as COMBO's loader reads them"


def _reusable(previous: PreviousShard, videos: list[PlannedVideo], index: dict[str, dict] | None) -> set[str]:
    """The videos the previous shard holds made from the same frames and maskige files, stored intact:
    by its ``index`` when the file is as recorded (its stored digests then hold), else video by video."""
    if index is not None:
        return {
            v.video_id
            for v in videos
            if all(v.identity.values())
            and all(index.get(v.video_id, {}).get(key) == value for key, value in v.identity.items())
        }
    return {
        v.video_id
        for v in videos
        if previous.matches_all(v.video_id, v.identity) and previous.stored_intact(v.video_id)
    }


def tqdm_videos(videos: list[PlannedVideo], out_path: Path, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(videos, desc=f"maskiges {out_path.stem}", disable=not progress)
