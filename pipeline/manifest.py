"""Manifests: one CSV per dataset listing every video, where its media and labels are, and its shard.

Schema (columns of ``data_manifests/{dataset}.csv``; lists inside a cell are ``;``-separated):

================ ============================================================================
video_id         stable id; for a raw folder the path relative to the folder (with extension)
split            train / val / test
task             s4, ms3, avss or raw
category         class name where the dataset has one (S4 category, AVSS label v1s/v1m/v2)
source_video     media file ffmpeg decodes (empty when the dataset ships extracted frames)
source_frames    T pre-extracted frame images (AVSBench layouts without raw videos)
source_audio     wav file beside pre-extracted frames
source_sha256    sha256 of the source video, or of the frame and wav hashes in order
duration         seconds (from ffmpeg's banner; empty when unreadable)
fps              frame rate of the video stream
audio_channels   channels of the first audio stream (empty: no audio stream)
audio_rate       sample rate of the first audio stream
num_seconds      T, frames/seconds kept per video
label_paths      T ground-truth images; an empty entry is an unlabelled frame
label_format     binary_png ({0,255}), voc_rgb (AVSS palette) or none
shard            stable hash of the video id modulo the number of shards
probe_error      why ffmpeg could not read the source (the extraction stage reports it)
================ ============================================================================

Adding a video changes exactly one shard's slice (``{data}/{dataset}/manifest/shard-N.csv``),
so only that shard's extraction reruns.
"""

from __future__ import annotations

import csv
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

from pipeline import media
from pipeline.atomic import atomic_path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp", ".ts")
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A dataset layout or manifest is malformed; the message names the file."""


@dataclass
class ManifestRow:
    video_id: str
    split: str
    task: str
    category: str = ""
    source_video: str = ""
    source_frames: str = ""
    source_audio: str = ""
    source_sha256: str = ""
    duration: str = ""
    fps: str = ""
    audio_channels: str = ""
    audio_rate: str = ""
    num_seconds: int = 5
    label_paths: str = ""
    label_format: str = "none"
    shard: int = 0
    probe_error: str = ""

    @property
    def frame_paths(self) -> list[str]:
        return self.source_frames.split(";") if self.source_frames else []

    @property
    def labels(self) -> list[str]:
        """One entry per second; '' where the frame is unlabelled."""
        if not self.label_paths:
            return [""] * int(self.num_seconds)
        return self.label_paths.split(";")

    def media_info(self) -> media.MediaInfo | None:
        if not self.fps and not self.audio_rate:
            return None
        as_float = lambda v: float(v) if v not in ("", None) else None  # noqa: E731
        as_int = lambda v: int(float(v)) if v not in ("", None) else None  # noqa: E731
        return media.MediaInfo(duration=as_float(self.duration), fps=as_float(self.fps), width=1 if self.fps else None,
                               height=1 if self.fps else None, audio_rate=as_int(self.audio_rate),
                               audio_channels=as_int(self.audio_channels))


COLUMNS = [f.name for f in fields(ManifestRow)]


def validate_video_id(video_id: str, where: str) -> str:
    """Reject ids that are empty or could escape an output folder (absolute, ``..``, backslashes)."""
    if not video_id or not video_id.strip():
        raise ManifestError(f"{where}: empty video id")
    posix = PurePosixPath(video_id)
    if posix.is_absolute() or video_id.startswith(("/", "\\")) or (len(video_id) > 1 and video_id[1] == ":"):
        raise ManifestError(f"{where}: video id {video_id!r} is an absolute path")
    if any(part == ".." for part in posix.parts) or "\\" in video_id or "\x00" in video_id:
        raise ManifestError(f"{where}: video id {video_id!r} would escape the output folder")
    return video_id


def shard_of(video_id: str, num_shards: int) -> int:
    """Stable shard of a video: the first 8 bytes of sha256(id) modulo ``num_shards``."""
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


# ---------------------------------------------------------------- hashing with a stat-keyed cache
class HashCache:
    """sha256 of files, remembered by (absolute path, size, mtime) so unchanged files are not re-read."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except ValueError:
                self.entries = {}

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self.entries:
            digest = hashlib.sha256()
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            self.entries[key] = digest.hexdigest()
        return self.entries[key]

    def save(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.entries))


def _fill_media(row: ManifestRow, hashes: HashCache) -> ManifestRow:
    """Hash the sources and probe the video (or the wav) of ``row``; unreadable files are noted, not raised."""
    try:
        if row.source_video:
            path = Path(row.source_video)
            row.source_sha256 = hashes.sha256(path) if path.is_file() else ""
            info = media.probe(path)
        else:
            parts = [hashes.sha256(Path(p)) for p in row.frame_paths]
            if row.source_audio and Path(row.source_audio).is_file():
                parts.append(hashes.sha256(Path(row.source_audio)))
            row.source_sha256 = hashlib.sha256("".join(parts).encode()).hexdigest()
            info = media.probe(row.source_audio) if row.source_audio and Path(row.source_audio).is_file() else None
        if info is not None:
            row.duration = f"{info.duration:.3f}" if info.duration is not None else ""
            row.fps = f"{info.fps:g}" if info.fps else ""
            row.audio_channels = str(info.audio_channels or "") if info.has_audio else ""
            row.audio_rate = str(info.audio_rate or "") if info.has_audio else ""
            if row.task == "raw" and row.num_seconds <= 0:
                row.num_seconds = media.seconds_in(info)
    except (media.MediaError, OSError) as exc:
        row.probe_error = str(exc)
    if row.num_seconds <= 0:
        row.num_seconds = 1
    return row


# ---------------------------------------------------------------- sources
def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _find_media(candidates: Iterable[Path]) -> Path | None:
    for base in candidates:
        for ext in VIDEO_EXTENSIONS:
            p = base.with_name(base.name + ext)
            if p.is_file():
                return p
    return None


def _read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ManifestError(f"{path}: meta CSV not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
        return list(reader)


def _check_split(split: str, where: str) -> str:
    if split not in SPLITS:
        raise ManifestError(f"{where}: split {split!r} is not one of {SPLITS}")
    return split


def rows_from_folder(root: Path, seconds: int | None, split: str = "auto") -> list[ManifestRow]:
    """Every video under ``root`` (recursive). Id = path relative to root; split from a top-level
    train/val/test folder when ``split == 'auto'`` (else 'test'); T = ``seconds`` or whole seconds."""
    if not root.is_dir():
        raise ManifestError(f"{root}: video folder not found")
    rows = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in VIDEO_EXTENSIONS or path.name.startswith("."):
            continue
        video_id = validate_video_id(_rel(path, root), str(path))
        first = PurePosixPath(video_id).parts[0]
        row_split = (first if first in SPLITS else "test") if split == "auto" else _check_split(split, str(root))
        rows.append(ManifestRow(video_id=video_id, split=row_split, task="raw", source_video=str(path),
                                num_seconds=seconds if seconds else 0))
    return rows


def rows_from_avsbench_s4(root: Path) -> list[ManifestRow]:
    """AVSBench-object S4: ``s4_meta_data.csv`` (name, category, split), raw videos when present,
    else ``visual_frames/{split}/{category}/{name}/{name}_{k}.png`` + ``audio_wav/{split}/{category}/{name}.wav``;
    labels ``gt_masks/{split}/{category}/{name}/{name}_{k}.png`` (train: frame 1 only)."""
    meta = root / "s4_meta_data.csv"
    rows = []
    for i, rec in enumerate(_read_csv(meta, ("name", "category", "split"))):
        where = f"{meta}:{i + 2}"
        name, category, split = rec["name"], rec["category"], _check_split(rec["split"], where)
        video_id = validate_video_id(f"{category}/{name}", where)
        validate_video_id(name, where)
        row = ManifestRow(video_id=video_id, split=split, task="s4", category=category, num_seconds=5,
                          label_format="binary_png")
        video = _find_media([root / "raw_videos" / split / category / name, root / "raw_videos" / category / name])
        if video is not None:
            row.source_video = str(video)
        else:
            frames = [root / "visual_frames" / split / category / name / f"{name}_{k}.png" for k in range(1, 6)]
            row.source_frames = ";".join(str(p) for p in frames)
            row.source_audio = str(root / "audio_wav" / split / category / f"{name}.wav")
        labels = [root / "gt_masks" / split / category / name / f"{name}_{k}.png" for k in range(1, 6)]
        row.label_paths = ";".join(str(p) if p.is_file() else "" for p in labels)
        rows.append(row)
    return rows


def rows_from_avsbench_ms3(root: Path) -> list[ManifestRow]:
    """AVSBench-object MS3: ``ms3_meta_data.csv`` (video_id, split), raw videos when present, else
    ``visual_frames/{video}/{video}.mp4_{k}.png`` + ``audio_wav/{split}/{video}.wav``; labels
    ``gt_masks/{split}/{video}/{video}_{k}.png``."""
    meta = root / "ms3_meta_data.csv"
    rows = []
    for i, rec in enumerate(_read_csv(meta, ("video_id", "split"))):
        where = f"{meta}:{i + 2}"
        vid, split = validate_video_id(rec["video_id"], where), _check_split(rec["split"], where)
        row = ManifestRow(video_id=vid, split=split, task="ms3", num_seconds=5, label_format="binary_png")
        video = _find_media([root / "raw_videos" / split / vid, root / "raw_videos" / vid])
        if video is not None:
            row.source_video = str(video)
        else:
            frames = [root / "visual_frames" / vid / f"{vid}.mp4_{k}.png" for k in range(1, 6)]
            row.source_frames = ";".join(str(p) for p in frames)
            wav = root / "audio_wav" / split / f"{vid}.wav"
            row.source_audio = str(wav if wav.is_file() else root / "audio_wav" / f"{vid}.wav")
        labels = [root / "gt_masks" / split / vid / f"{vid}_{k}.png" for k in range(1, 6)]
        row.label_paths = ";".join(str(p) if p.is_file() else "" for p in labels)
        rows.append(row)
    return rows


def rows_from_avsbench_semantic(root: Path) -> list[ManifestRow]:
    """AVSBench-semantic: ``metadata.csv`` (uid, label in v1s/v1m/v2, split); per video
    ``{label}/{uid}/raw_video.*`` when present, else ``frames/{i}.jpg`` + ``audio.wav``; labels
    ``labels_rgb/{i}.png`` (VOC palette). v1s/v1m keep 5 frames, v2 keeps 10."""
    meta = root / "metadata.csv"
    rows = []
    for i, rec in enumerate(_read_csv(meta, ("uid", "label", "split"))):
        where = f"{meta}:{i + 2}"
        uid, label, split = rec["uid"], rec["label"], _check_split(rec["split"], where)
        if label not in ("v1s", "v1m", "v2"):
            raise ManifestError(f"{where}: label {label!r} is not v1s, v1m or v2")
        video_id = validate_video_id(f"{label}/{uid}", where)
        validate_video_id(uid, where)
        num = 10 if label == "v2" else 5
        folder = root / label / uid
        row = ManifestRow(video_id=video_id, split=split, task="avss", category=label, num_seconds=num,
                          label_format="voc_rgb")
        video = _find_media([folder / "raw_video", folder / uid])
        if video is not None:
            row.source_video = str(video)
        else:
            frames = []
            for k in range(num):
                jpg, png = folder / "frames" / f"{k}.jpg", folder / "frames" / f"{k}.png"
                frames.append(png if png.is_file() and not jpg.is_file() else jpg)
            row.source_frames = ";".join(str(p) for p in frames)
            row.source_audio = str(folder / "audio.wav")
        labels = [folder / "labels_rgb" / f"{k}.png" for k in range(num)]
        row.label_paths = ";".join(str(p) if p.is_file() else "" for p in labels)
        rows.append(row)
    return rows


SOURCES = {
    "folder": rows_from_folder,
    "avsbench_s4": rows_from_avsbench_s4,
    "avsbench_ms3": rows_from_avsbench_ms3,
    "avsbench_semantic": rows_from_avsbench_semantic,
}


@dataclass
class SourceParams:
    """One entry of ``manifest.datasets`` in params.yaml."""

    source: str = "folder"  # folder | avsbench_s4 | avsbench_ms3 | avsbench_semantic
    root: str = ""
    seconds: int | None = 5  # folder sources only: T; null = whole seconds of each video
    split: str = "auto"  # folder sources only

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {sorted(SOURCES)}")
        if not self.root:
            raise ValueError("root is required")


def build_manifest(cfg: SourceParams, num_shards: int, hash_cache: Path | None = None,
                   threads: int = 4, progress: bool = True) -> list[ManifestRow]:
    """List, hash and probe every video of a dataset source; assign shards."""
    root = Path(cfg.root)
    if cfg.source == "folder":
        rows = rows_from_folder(root, cfg.seconds, cfg.split)
    else:
        rows = SOURCES[cfg.source](root)
    seen: dict[str, ManifestRow] = {}
    for row in rows:
        if row.video_id in seen:
            raise ManifestError(f"{root}: video id {row.video_id!r} appears twice")
        seen[row.video_id] = row
        row.shard = shard_of(row.video_id, num_shards)
    hashes = HashCache(hash_cache)
    from tqdm.auto import tqdm

    # Probing is one short ffmpeg process per file: threads overlap the process start-up.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(tqdm(pool.map(lambda r: _fill_media(r, hashes), rows), total=len(rows), desc=f"manifest {root}",
                         unit="video", disable=not progress))
    hashes.save()
    return rows


def write_manifest(rows: list[ManifestRow], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def read_manifest(path: str | Path) -> list[ManifestRow]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `avs manifest` first)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: not a manifest, missing column(s) {missing}")
        rows = []
        for i, rec in enumerate(reader):
            try:
                rec = {k: rec[k] for k in COLUMNS}
                rec["num_seconds"] = int(rec["num_seconds"])
                rec["shard"] = int(rec["shard"])
            except ValueError as exc:
                raise ManifestError(f"{path}:{i + 2}: {exc}") from exc
            validate_video_id(rec["video_id"], f"{path}:{i + 2}")
            rows.append(ManifestRow(**rec))
    return rows


def shard_slice_file(data_root: str | Path, dataset: str, shard: int) -> Path:
    return Path(data_root) / dataset / "manifest" / f"shard-{shard}.csv"


def write_shard_slices(rows: list[ManifestRow], data_root: str | Path, dataset: str, num_shards: int) -> list[Path]:
    """Write one manifest slice per shard (empty slices too, so every DVC stage item has its input)."""
    out = []
    folder = Path(data_root) / dataset / "manifest"
    for stale in folder.glob("shard-*.csv") if folder.is_dir() else []:
        if int(stale.stem.split("-")[1]) >= num_shards:
            stale.unlink()
    for shard in range(num_shards):
        path = shard_slice_file(data_root, dataset, shard)
        write_manifest([r for r in rows if r.shard == shard], path)
        out.append(path)
    return out


# ---------------------------------------------------------------- labels
def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC bit-interleave palette AVSBench-semantic uses: uint8 [n,3], 0 = black, 1 = (128,0,0)."""
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


IGNORE_LABEL = 255


def decode_label(path: str | Path, label_format: str, size: tuple[int, int]) -> np.ndarray:
    """Read one ground-truth image as uint8 [H,W] at ``size`` (NEAREST): binary {0,1}, or class ids
    (unknown colours -> 255 = ignore)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if label_format == "voc_rgb" else "L")
            img = img.resize((size[1], size[0]), Image.NEAREST)
            array = np.asarray(img)
    except OSError as exc:
        raise ManifestError(f"{path}: unreadable label image ({exc})") from exc
    if label_format == "binary_png":
        return (array > 127).astype(np.uint8)
    if label_format == "voc_rgb":
        palette = voc_palette(256).astype(np.int64)
        codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
        lookup = {int(c): k for k, c in enumerate(codes)}
        flat = (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
        uniques, inverse = np.unique(flat, return_inverse=True)
        mapped = np.array([lookup.get(int(u), IGNORE_LABEL) for u in uniques], np.uint8)
        return mapped[inverse].reshape(flat.shape)
    raise ManifestError(f"{path}: unknown label format {label_format!r}")


def iter_rows(paths: Iterable[str | Path]) -> Iterator[ManifestRow]:
    for path in paths:
        yield from read_manifest(path)
