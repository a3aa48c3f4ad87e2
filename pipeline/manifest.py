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
frame_fit        stretch (resize to the frame size) or crop (short side + centre crop: AVSS train)
shard            stable hash of the video id modulo the number of shards
probe_error      why ffmpeg could not read the source (the extraction stage reports it)
================ ============================================================================

Sources: a folder of videos, or the AVSBench release trees (``docs/data.md`` shows them), read
as the official loaders read them. Label decoding lives in :mod:`pipeline.labels`.

Adding a video changes exactly one shard's slice (``{data}/{dataset}/manifest/shard-N.csv``),
so only that shard's extraction reruns.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator

from pipeline import media
from pipeline.atomic import atomic_path, write_csv
from pipeline.labels import FITS
from pipeline.params import NonNegativeInt, ParamsError, from_section

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp", ".ts")
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A dataset layout or manifest is malformed; the message names the file."""


def _no_remote(value: str) -> str:
    """``value`` (one path, or ``;``-separated paths) unless one of them is a URL or a protocol prefix."""
    for part in value.split(";") if value else []:
        if part:
            try:
                media.refuse_remote(part)
            except media.MediaError as exc:
                raise ValueError(str(exc)) from None
    return value


# Paths in manifest rows: local files only (a URL or protocol prefix is refused when the CSV is read).
LocalSources = Annotated[str, AfterValidator(_no_remote)]


@dataclass
class ManifestRow:
    """One manifest line. Rows read from a CSV are validated against these annotations (pydantic, via
    :func:`pipeline.params.from_section`), each error naming the CSV line and the column."""

    video_id: str
    split: Literal["train", "val", "test"]
    task: Literal["s4", "ms3", "avss", "raw"]
    category: str = ""
    source_video: LocalSources = ""
    source_frames: LocalSources = ""
    source_audio: LocalSources = ""
    source_sha256: str = ""
    duration: str = ""
    fps: str = ""
    audio_channels: str = ""
    audio_rate: str = ""
    num_seconds: NonNegativeInt = 5  # 0 only on rows whose probe failed
    label_paths: LocalSources = ""
    label_format: Literal["binary_png", "voc_rgb", "none"] = "none"
    shard: NonNegativeInt = 0
    probe_error: str = ""
    frame_fit: Literal["stretch", "crop"] = "stretch"

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
        return media.MediaInfo(
            duration=as_float(self.duration),
            fps=as_float(self.fps),
            width=1 if self.fps else None,
            height=1 if self.fps else None,
            audio_rate=as_int(self.audio_rate),
            audio_channels=as_int(self.audio_channels),
        )


COLUMNS = [f.name for f in fields(ManifestRow)]
OPTIONAL_COLUMNS = {"frame_fit": "stretch"}  # added later: manifests written before still read


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
            missing = [p for p in row.frame_paths if not Path(p).is_file()]
            if missing:
                raise media.MediaError(f"{missing[0]}: frame image missing ({len(missing)} of {len(row.frame_paths)})")
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


def _skip_reason(path: Path) -> str | None:
    """Why the folder source does not take ``path`` (None: it is a video file it takes)."""
    if path.name.startswith("."):
        return "hidden file or folder"
    if path.is_symlink() and not path.exists():
        return "broken symbolic link"
    if path.is_dir():
        return "a folder named like a video (only files are read)" if path.suffix.lower() in VIDEO_EXTENSIONS else None
    if not path.is_file():
        return "not a regular file"
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        return f"extension {path.suffix or '(none)'!r} is not a video extension ({' '.join(VIDEO_EXTENSIONS)})"
    return None


def _link_reason(path: Path, real_root: str) -> str | None:
    """The rule for symbolic links (docs/data.md): a link to a file inside the root is read; a link to a
    file outside it is not, nor is any link to a folder (one inside the root is walked under its own
    path). Every link not followed is listed with its reason. None: not a link, or followed."""
    if not path.is_symlink() or not os.path.exists(path):
        return None  # broken links: _skip_reason
    target = os.path.realpath(path)
    inside = target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)
    if os.path.isdir(target):
        where = "inside the root (walked under its own path)" if inside else "outside the root"
        return f"symbolic link to a folder {where}: not entered"
    return None if inside else "symbolic link to a file outside the root: not read"


def scan_folder(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Video files under ``root`` (recursive, hidden folders not entered) and (relative path, reason)
    of everything else that is not a plain folder, so nothing is skipped silently."""
    if not root.is_dir():
        raise ManifestError(f"{root}: video folder not found")
    videos, skipped = [], []
    real_root = os.path.realpath(root)

    def reason_of(path: Path) -> str | None:
        return _skip_reason(path) if path.name.startswith(".") else _link_reason(path, real_root) or _skip_reason(path)

    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(dirnames):
            reason = reason_of(base / name)
            if reason:
                skipped.append((_rel(base / name, root), reason))
        dirnames[:] = sorted(d for d in dirnames if not reason_of(base / d))
        for name in sorted(filenames):
            reason = reason_of(base / name)
            if reason:
                skipped.append((_rel(base / name, root), reason))
            else:
                videos.append(base / name)
    return sorted(videos), sorted(skipped)


def rows_from_folder(
    root: Path, seconds: int | None, split: str = "auto", skipped: list[tuple[str, str]] | None = None
) -> list[ManifestRow]:
    """Every video under ``root`` (recursive). Id = path relative to root; split from a top-level
    train/val/test folder when ``split == 'auto'`` (else 'test'); T = ``seconds`` or whole seconds.
    Files not taken are appended to ``skipped`` as (relative path, reason)."""
    videos, not_taken = scan_folder(root)
    if skipped is not None:
        skipped.extend(not_taken)
    rows = []
    for path in videos:
        video_id = validate_video_id(_rel(path, root), str(path))
        first = PurePosixPath(video_id).parts[0]
        row_split = (first if first in SPLITS else "test") if split == "auto" else _check_split(split, str(root))
        rows.append(
            ManifestRow(
                video_id=video_id,
                split=row_split,
                task="raw",
                source_video=str(path),
                num_seconds=seconds if seconds else 0,
            )
        )
    return rows


def release_root(root: Path, meta_name: str, data_name: str) -> tuple[Path, Path]:
    """(meta CSV, data folder) of an AVSBench-object release root: ``Single-source`` /
    ``Multi-sources`` (meta CSV beside ``s4_data`` / ``ms3_data``), or the data folder itself
    (meta CSV one level up)."""
    if (root / meta_name).is_file():
        return root / meta_name, (root / data_name if (root / data_name).is_dir() else root)
    if (root.parent / meta_name).is_file():
        return root.parent / meta_name, root
    raise ManifestError(
        f"{root / meta_name}: meta CSV not found (give the release folder holding {meta_name} "
        f"beside {data_name}/, or {data_name}/ itself)"
    )


def _choose_media(row: ManifestRow, frames: list[Path], audio: Path, video: Path | None, media_pref: str) -> None:
    """Fill the row's sources: the released frames + wav, or a raw video (``media``: auto | frames | video)."""
    use_video = video is not None and (
        media_pref == "video" or (media_pref == "auto" and not all(p.is_file() for p in frames))
    )
    if use_video:
        row.source_video = str(video)
    else:
        row.source_frames = ";".join(str(p) for p in frames)
        row.source_audio = str(audio)


def _labels(paths: list[Path]) -> str:
    return ";".join(str(p) if p.is_file() else "" for p in paths)


def rows_from_avsbench_s4(root: Path, media_pref: str = "auto") -> list[ManifestRow]:
    """AVSBench-object S4 (``Single-source/`` or ``Single-source/s4_data/``): ``s4_meta_data.csv``
    (name, start, category, split); in ``s4_data/``: ``visual_frames/{split}/{category}/{name}/{name}_{k}.png``
    (k = 1..5), ``audio_wav/{split}/{category}/{name}.wav``, ``gt_masks/{split}/{category}/{name}/{name}_{k}.png``
    (train: k = 1 only); raw videos (the preprocessing input) ``raw_videos/{split}/{category}/{name}.mp4``."""
    meta, data = release_root(root, "s4_meta_data.csv", "s4_data")
    rows = []
    for i, rec in enumerate(_read_csv(meta, ("name", "category", "split"))):
        where = f"{meta}:{i + 2}"
        name, category, split = rec["name"], rec["category"], _check_split(rec["split"], where)
        video_id = validate_video_id(f"{category}/{name}", where)
        validate_video_id(name, where)
        row = ManifestRow(
            video_id=video_id, split=split, task="s4", category=category, num_seconds=5, label_format="binary_png"
        )
        frames = [data / "visual_frames" / split / category / name / f"{name}_{k}.png" for k in range(1, 6)]
        video = _find_media([data / "raw_videos" / split / category / name])
        _choose_media(row, frames, data / "audio_wav" / split / category / f"{name}.wav", video, media_pref)
        row.label_paths = _labels(
            [data / "gt_masks" / split / category / name / f"{name}_{k}.png" for k in range(1, 6)]
        )
        rows.append(row)
    return rows


def rows_from_avsbench_ms3(root: Path, media_pref: str = "auto") -> list[ManifestRow]:
    """AVSBench-object MS3 (``Multi-sources/`` or ``Multi-sources/ms3_data/``): ``ms3_meta_data.csv``
    (video_id, split); in ``ms3_data/``: ``visual_frames/{video}/{video}.mp4_{k}.png`` (no split folder,
    k = 1..5), ``audio_wav/{split}/{video}.wav``, ``gt_masks/{split}/{video}/{video}_{k}.png`` (all 5);
    raw videos ``raw_videos/{video}.mp4``."""
    meta, data = release_root(root, "ms3_meta_data.csv", "ms3_data")
    rows = []
    for i, rec in enumerate(_read_csv(meta, ("video_id", "split"))):
        where = f"{meta}:{i + 2}"
        vid, split = validate_video_id(rec["video_id"], where), _check_split(rec["split"], where)
        row = ManifestRow(video_id=vid, split=split, task="ms3", num_seconds=5, label_format="binary_png")
        frames = [data / "visual_frames" / vid / f"{vid}.mp4_{k}.png" for k in range(1, 6)]
        video = _find_media([data / "raw_videos" / vid])
        _choose_media(row, frames, data / "audio_wav" / split / f"{vid}.wav", video, media_pref)
        row.label_paths = _labels([data / "gt_masks" / split / vid / f"{vid}_{k}.png" for k in range(1, 6)])
        rows.append(row)
    return rows


def rows_from_avsbench_semantic(root: Path, media_pref: str = "auto", train_fit: str = "crop") -> list[ManifestRow]:
    """AVSBench-semantic (``AVSBench_semantic/``): ``metadata.csv`` (uid, label in v1s/v1m/v2, split) and
    ``label2idx.json``; per video ``{label}/{uid}/frames/{i}.jpg`` (i = 0.., 5 for v1s/v1m, 10 for v2),
    ``audio.wav``, ``labels_rgb/{i}.png`` (VOC palette; v1s train: i = 0 only). ``raw_video.*`` beside
    them (not in the release; the demo writes one) is used by ``media: video``. Train rows read from
    the released frames get ``frame_fit = train_fit`` (the official train loader centre-crops)."""
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
        row = ManifestRow(
            video_id=video_id,
            split=split,
            task="avss",
            category=label,
            num_seconds=num,
            label_format="voc_rgb",
            frame_fit=train_fit if split == "train" else "stretch",
        )
        frames = [folder / "frames" / f"{k}.jpg" for k in range(num)]
        _choose_media(row, frames, folder / "audio.wav", _find_media([folder / "raw_video"]), media_pref)
        if row.source_video:  # ffmpeg scales raw videos to the frame size: labels must match that
            row.frame_fit = "stretch"
        row.label_paths = _labels([folder / "labels_rgb" / f"{k}.png" for k in range(num)])
        rows.append(row)
    return rows


SOURCES = ("folder", "avsbench_s4", "avsbench_ms3", "avsbench_semantic")
MEDIA = ("auto", "frames", "video")


@dataclass
class SourceParams:
    """One entry of ``manifest.datasets`` in params.yaml."""

    source: str = "folder"  # folder | avsbench_s4 | avsbench_ms3 | avsbench_semantic
    root: str = ""
    seconds: int | None = 5  # folder sources only: T; null = whole seconds of each video
    split: str = "auto"  # folder sources only
    media: str = "auto"  # avsbench_*: auto (released frames + wav, else raw video) | frames | video
    train_fit: str = "crop"  # avsbench_semantic train frames: crop (official short side + centre crop) | stretch

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {list(SOURCES)}")
        if not self.root:
            raise ValueError("root is required")
        if self.media not in MEDIA:
            raise ValueError(f"media must be one of {list(MEDIA)}, got {self.media!r}")
        if self.train_fit not in FITS:
            raise ValueError(f"train_fit must be one of {list(FITS)}, got {self.train_fit!r}")


def list_rows(cfg: SourceParams, skipped: list[tuple[str, str]] | None = None) -> list[ManifestRow]:
    """The rows of a dataset source, before hashing and probing."""
    root = Path(cfg.root)
    if cfg.source == "folder":
        return rows_from_folder(root, cfg.seconds, cfg.split, skipped)
    if cfg.source == "avsbench_s4":
        return rows_from_avsbench_s4(root, cfg.media)
    if cfg.source == "avsbench_ms3":
        return rows_from_avsbench_ms3(root, cfg.media)
    return rows_from_avsbench_semantic(root, cfg.media, cfg.train_fit)


def build_manifest(
    cfg: SourceParams,
    num_shards: int,
    hash_cache: Path | None = None,
    threads: int = 4,
    progress: bool = True,
    skipped: list[tuple[str, str]] | None = None,
) -> list[ManifestRow]:
    """List, hash and probe every video of a dataset source; assign shards. Files a folder source
    does not take are appended to ``skipped`` as (relative path, reason)."""
    rows = list_rows(cfg, skipped)
    seen: set[str] = set()
    for row in rows:
        if row.video_id in seen:
            raise ManifestError(f"{cfg.root}: video id {row.video_id!r} appears twice")
        seen.add(row.video_id)
        row.shard = shard_of(row.video_id, num_shards)
    hashes = HashCache(hash_cache)
    from tqdm.auto import tqdm

    # Probing is one short ffmpeg process per file: threads overlap the process start-up.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(
            tqdm(
                pool.map(lambda r: _fill_media(r, hashes), rows),
                total=len(rows),
                desc=f"manifest {cfg.root}",
                unit="video",
                disable=not progress,
            )
        )
    hashes.save()
    return rows


def _reason_only(row: ManifestRow) -> str:
    """The probe error without the file name, so errors of different videos can be counted together."""
    error = row.probe_error
    for path in (row.source_video, row.source_audio, *row.frame_paths):
        if path and error.startswith(f"{path}: "):
            return error[len(path) + 2 :]
    return error


def unreadable_summary(rows: list[ManifestRow]) -> tuple[int, str]:
    """(number of unreadable rows, the most common reason with its count)."""
    bad = [r for r in rows if r.probe_error]
    if not bad:
        return 0, ""
    reason, count = Counter(_reason_only(r) for r in bad).most_common(1)[0]
    return len(bad), f"{reason} ({count} of {len(bad)})"


def write_manifest(rows: list[ManifestRow], path: str | Path) -> None:
    write_csv(path, (asdict(row) for row in rows), COLUMNS)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `avs manifest` first)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL_COLUMNS]
            if missing:
                raise ManifestError(f"{path}: not a manifest, missing column(s) {missing}")
            return [_row_from_csv(rec, f"{path}:{reader.line_num}") for rec in reader]
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a UTF-8 text CSV (a binary file?)") from None
    except csv.Error as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from None


def _row_from_csv(rec: dict[str, str | None], where: str) -> ManifestRow:
    """One CSV record -> a validated row; errors name ``where`` (file:line) and the column."""
    values = {k: rec.get(k) or "" for k in COLUMNS}
    values.update({k: default for k, default in OPTIONAL_COLUMNS.items() if not values[k]})
    try:
        row = from_section(ManifestRow, values, where)
    except ParamsError as exc:
        raise ManifestError(str(exc).replace(f"params '{where}'", where)) from None
    if row.num_seconds == 0 and not row.probe_error:
        raise ManifestError(f"{where}.num_seconds must be >= 1 for a readable video, got 0")
    validate_video_id(row.video_id, where)
    return row


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
