"""Per-video extraction (frames, 16 kHz audio, ground truth) and the shard it is written to."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline import media
from pipeline.failures import FailureLog
from pipeline.labels import NUM_AVSS_CLASSES, fit_image, read_label
from pipeline.manifest import ManifestRow
from pipeline.parallel import map_ordered
from pipeline.feature_record import feature_params, record_attrs
from pipeline.params import DaskParams, Size2, params_hash
from pipeline.shards import ShardWriter

KIND = "extract"
# ffmpeg's scale flags (swscale algorithms).
ResizeFilter = Literal["fast_bilinear", "bilinear", "bicubic", "experimental", "neighbor", "area", "bicublin",
                       "gauss", "sinc", "lanczos", "spline"]


@feature_params(KIND)
@dataclass
class ExtractParams:
    """``extract`` section of params.yaml."""

    frame_size: Size2 = field(default_factory=lambda: [224, 224])  # [H, W]; AVSBench: 224x224, aspect not kept
    resize_filter: ResizeFilter = "bilinear"  # ffmpeg scale flags; AVSBench used cv2 INTER_LINEAR (no antialias): mean abs diff 5-7 grey levels, see benchmarks
    missing_audio: Literal["silence", "fail"] = "silence"  # silence: keep the video with silent audio (warning) | fail: list it as a failure
    strict: bool = False  # any failed video -> non-zero exit (after writing everything that worked)

    def __post_init__(self) -> None:
        if len(self.frame_size) != 2 or min(self.frame_size) < 8:
            raise ValueError(f"frame_size must be [H, W] with both >= 8, got {self.frame_size}")
        if self.missing_audio not in ("silence", "fail"):
            raise ValueError(f"missing_audio must be 'silence' or 'fail', got {self.missing_audio!r}")

    def hash(self) -> str:
        # strict only changes the exit code, never the shard contents.
        return params_hash({k: v for k, v in asdict(self).items() if k != "strict"})


@dataclass
class ExtractedVideo:
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    warnings: list[str]


def _read_frame_images(paths: list[str], size: tuple[int, int], fit: str = "stretch") -> np.ndarray:
    from PIL import Image

    frames = []
    for p in paths:
        try:
            with Image.open(p) as img:
                frames.append(np.asarray(fit_image(img.convert("RGB"), size, fit)))
        except (OSError, ValueError) as exc:
            raise media.MediaError(f"{p}: unreadable frame image ({exc})") from exc
    return np.stack(frames)


def extract_video(row: ManifestRow, cfg: ExtractParams) -> ExtractedVideo:
    """Frames uint8 [T,H,W,3], audio int16 [T*16000], and gt_masks uint8 [T,H,W] + gt_valid bool [T]
    when the dataset has labels. Raises MediaError/ManifestError naming the file on bad input."""
    size = (int(cfg.frame_size[0]), int(cfg.frame_size[1]))
    T = int(row.num_seconds)
    warnings: list[str] = []
    if row.probe_error:
        raise media.MediaError(row.probe_error)
    if row.source_video:
        info = row.media_info()
        if info is None or not info.fps:
            raise media.MediaError(f"{row.source_video}: no video stream")
        clip = media.extract_clip(row.source_video, T, size, info=info, resize_filter=cfg.resize_filter,
                                  missing_audio=cfg.missing_audio)
        frames, audio, audio_source, indices = clip.frames, clip.audio, clip.audio_source, clip.frame_indices
        if clip.decoded_frames <= max(media.avsbench_frame_indices(T, info.fps)):
            warnings.append(f"video shorter than {T} s ({clip.decoded_frames} frames): last frame repeated")
    else:
        frames = _read_frame_images(row.frame_paths, size, row.frame_fit)
        if len(frames) != T:
            raise media.MediaError(f"{row.video_id}: {len(frames)} frame images for T={T}")
        indices = list(range(T))
        if row.source_audio and Path(row.source_audio).is_file():
            audio, audio_source = media.read_audio(row.source_audio, T), "wav"
        elif cfg.missing_audio == "fail":
            raise media.MediaError(f"{row.source_audio or row.video_id}: audio file missing")
        else:
            audio, audio_source = np.zeros(T * media.AUDIO_RATE, np.int16), "silence (no audio file)"
    if audio_source.startswith("silence"):
        warnings.append(f"{audio_source}: audio is all zeros")
    arrays: dict[str, np.ndarray] = {"frames": frames, "audio": audio}
    if row.label_format != "none":
        labels = row.labels
        gt = np.zeros((T, *size), np.uint8)
        valid = np.zeros(T, bool)
        unknown = 0
        for t, label in enumerate(labels[:T]):
            if label:
                decoded = read_label(label, row.label_format, size, fit=row.frame_fit)
                gt[t], valid[t] = decoded.ids, True
                unknown += decoded.unknown_pixels
        if unknown:
            warnings.append(f"{unknown} label pixel(s) of colours outside the {NUM_AVSS_CLASSES}-class palette "
                            "read as background 0 (as the official loader does)")
        arrays["gt_masks"] = gt
        arrays["gt_valid"] = valid
    attrs = {"source_sha256": row.source_sha256, "split": row.split, "task": row.task, "category": row.category,
             "num_seconds": T, "frame_indices": indices, "audio_source": audio_source,
             "source": row.source_video or row.source_frames.split(";")[0], "label_format": row.label_format}
    return ExtractedVideo(arrays, attrs, warnings)


def extract_shard(rows: list[ManifestRow], out_path: Path, cfg: ExtractParams, dask_cfg: DaskParams,
                  dataset: str = "", progress: bool = True) -> FailureLog:
    """Extract every row into one shard at ``out_path`` (written atomically, in manifest order)."""
    failures = FailureLog(stage=KIND)
    work = functools.partial(extract_video, cfg=cfg)
    with ShardWriter(out_path, kind=KIND, params_hash=cfg.hash(),
                     attrs={"dataset": dataset, **record_attrs(KIND, cfg)}) as writer:
        for row, outcome in map_ordered(work, rows, dask_cfg=dask_cfg, desc=f"extract {out_path.stem}",
                                        progress=progress):
            source = row.source_video or row.source_audio
            if not outcome.ok:
                failures.add(row.video_id, outcome.error or "unknown error", source=source)
                continue
            result: ExtractedVideo = outcome.value
            for warning in result.warnings:
                failures.warn(row.video_id, warning, source=source)
            writer.write_video(row.video_id, result.arrays, {**result.attrs, "params_hash": cfg.hash()})
    return failures
