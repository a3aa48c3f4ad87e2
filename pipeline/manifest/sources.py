"""Dataset sources: a folder of videos, or the AVSBench release trees (``docs/data.md`` shows them), read
as the official loaders read them. Label decoding lives in :mod:`pipeline.labels`."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated

from pydantic import Field

from pipeline.labels import FITS
from pipeline.manifest.paths import FolderCheck, StatOnce, joined
from pipeline.manifest.schema import MAX_SECONDS, SPLITS, ManifestError, ManifestRow, validate_video_id

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp", ".ts")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


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


def _choose_media(
    row: ManifestRow, frames: list[str], audio: str, video: str | None, media_pref: str, folders: FolderCheck
) -> None:
    """Fill the row's sources: the released frames + wav, or a raw video (``media``: auto | frames | video)."""
    use_video = video is not None and (
        media_pref == "video" or (media_pref == "auto" and not all(folders.is_file(p) for p in frames))
    )
    if use_video:
        row.source_video = video
    else:
        row.source_frames = ";".join(frames)
        row.source_audio = audio


def _labels(paths: list[str], folders: FolderCheck) -> str:
    return ";".join(p if folders.is_file(p) else "" for p in paths)


def rows_from_avsbench_s4(root: Path, media_pref: str = "auto", stats: StatOnce | None = None) -> list[ManifestRow]:
    """AVSBench-object S4 (``Single-source/`` or ``Single-source/s4_data/``): ``s4_meta_data.csv``
    (name, start, category, split); in ``s4_data/``: ``visual_frames/{split}/{category}/{name}/{name}_{k}.png``
    (k = 1..5), ``audio_wav/{split}/{category}/{name}.wav``, ``gt_masks/{split}/{category}/{name}/{name}_{k}.png``
    (train: k = 1 only); raw videos (the preprocessing input) ``raw_videos/{split}/{category}/{name}.mp4``."""
    meta, data = release_root(root, "s4_meta_data.csv", "s4_data")
    base, folders, rows = str(data), FolderCheck(stats), []
    for i, rec in enumerate(_read_csv(meta, ("name", "category", "split"))):
        where = f"{meta}:{i + 2}"
        name, category, split = rec["name"], rec["category"], _check_split(rec["split"], where)
        video_id = validate_video_id(f"{category}/{name}", where)
        validate_video_id(name, where)
        row = ManifestRow(
            video_id=video_id, split=split, task="s4", category=category, num_seconds=5, label_format="binary_png"
        )
        frames_dir = joined(base, f"visual_frames/{split}/{category}/{name}")
        frames = [joined(frames_dir, f"{name}_{k}.png") for k in range(1, 6)]
        video = folders.first_file(joined(base, f"raw_videos/{split}/{category}/{name}"), VIDEO_EXTENSIONS)
        _choose_media(row, frames, joined(base, f"audio_wav/{split}/{category}/{name}.wav"), video, media_pref, folders)
        masks_dir = joined(base, f"gt_masks/{split}/{category}/{name}")
        row.label_paths = _labels([joined(masks_dir, f"{name}_{k}.png") for k in range(1, 6)], folders)
        rows.append(row)
    return rows


def rows_from_avsbench_ms3(root: Path, media_pref: str = "auto", stats: StatOnce | None = None) -> list[ManifestRow]:
    """AVSBench-object MS3 (``Multi-sources/`` or ``Multi-sources/ms3_data/``): ``ms3_meta_data.csv``
    (video_id, split); in ``ms3_data/``: ``visual_frames/{video}/{video}.mp4_{k}.png`` (no split folder,
    k = 1..5), ``audio_wav/{split}/{video}.wav``, ``gt_masks/{split}/{video}/{video}_{k}.png`` (all 5);
    raw videos ``raw_videos/{video}.mp4``."""
    meta, data = release_root(root, "ms3_meta_data.csv", "ms3_data")
    base, folders, rows = str(data), FolderCheck(stats), []
    for i, rec in enumerate(_read_csv(meta, ("video_id", "split"))):
        where = f"{meta}:{i + 2}"
        vid, split = validate_video_id(rec["video_id"], where), _check_split(rec["split"], where)
        row = ManifestRow(video_id=vid, split=split, task="ms3", num_seconds=5, label_format="binary_png")
        frames_dir = joined(base, f"visual_frames/{vid}")
        frames = [joined(frames_dir, f"{vid}.mp4_{k}.png") for k in range(1, 6)]
        video = folders.first_file(joined(base, f"raw_videos/{vid}"), VIDEO_EXTENSIONS)
        _choose_media(row, frames, joined(base, f"audio_wav/{split}/{vid}.wav"), video, media_pref, folders)
        masks_dir = joined(base, f"gt_masks/{split}/{vid}")
        row.label_paths = _labels([joined(masks_dir, f"{vid}_{k}.png") for k in range(1, 6)], folders)
        rows.append(row)
    return rows


def rows_from_avsbench_semantic(
    root: Path, media_pref: str = "auto", train_fit: str = "crop", stats: StatOnce | None = None
) -> list[ManifestRow]:
    """AVSBench-semantic (``AVSBench_semantic/``): ``metadata.csv`` (uid, label in v1s/v1m/v2, split) and
    ``label2idx.json``; per video ``{label}/{uid}/frames/{i}.jpg`` (i = 0.., 5 for v1s/v1m, 10 for v2),
    ``audio.wav``, ``labels_rgb/{i}.png`` (VOC palette; v1s train: i = 0 only). ``raw_video.*`` beside
    them (not in the release; the demo writes one) is used by ``media: video``. Train rows read from
    the released frames get ``frame_fit = train_fit`` (the official train loader centre-crops)."""
    meta = root / "metadata.csv"
    base, folders, rows = str(root), FolderCheck(stats), []
    for i, rec in enumerate(_read_csv(meta, ("uid", "label", "split"))):
        where = f"{meta}:{i + 2}"
        uid, label, split = rec["uid"], rec["label"], _check_split(rec["split"], where)
        if label not in ("v1s", "v1m", "v2"):
            raise ManifestError(f"{where}: label {label!r} is not v1s, v1m or v2")
        video_id = validate_video_id(f"{label}/{uid}", where)
        validate_video_id(uid, where)
        num = 10 if label == "v2" else 5
        folder = joined(base, f"{label}/{uid}")
        row = ManifestRow(
            video_id=video_id,
            split=split,
            task="avss",
            category=label,
            num_seconds=num,
            label_format="voc_rgb",
            frame_fit=train_fit if split == "train" else "stretch",
        )
        frames = [joined(folder, f"frames/{k}.jpg") for k in range(num)]
        video = folders.first_file(joined(folder, "raw_video"), VIDEO_EXTENSIONS)
        _choose_media(row, frames, joined(folder, "audio.wav"), video, media_pref, folders)
        if row.source_video:  # ffmpeg scales raw videos to the frame size: labels must match that
            row.frame_fit = "stretch"
        row.label_paths = _labels([joined(folder, f"labels_rgb/{k}.png") for k in range(num)], folders)
        rows.append(row)
    return rows


SOURCES = ("folder", "avsbench_s4", "avsbench_ms3", "avsbench_semantic")
MEDIA = ("auto", "frames", "video")


@dataclass
class SourceParams:
    """One entry of ``manifest.datasets`` in params.yaml."""

    source: str = "folder"  # folder | avsbench_s4 | avsbench_ms3 | avsbench_semantic
    root: str = ""
    seconds: Annotated[int, Field(ge=1, le=MAX_SECONDS)] | None = 5  # folder sources only: T; null = whole seconds
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


def list_rows(
    cfg: SourceParams, skipped: list[tuple[str, str]] | None = None, stats: StatOnce | None = None
) -> list[ManifestRow]:
    """The rows of a dataset source, before hashing and probing (``stats``: the run's shared stats)."""
    root = Path(cfg.root)
    if cfg.source == "folder":
        return rows_from_folder(root, cfg.seconds, cfg.split, skipped)
    if cfg.source == "avsbench_s4":
        return rows_from_avsbench_s4(root, cfg.media, stats)
    if cfg.source == "avsbench_ms3":
        return rows_from_avsbench_ms3(root, cfg.media, stats)
    return rows_from_avsbench_semantic(root, cfg.media, cfg.train_fit, stats)
