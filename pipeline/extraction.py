"""Per-video extraction (frames, 16 kHz audio, ground truth) and the shard it is written to."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from warnings import warn

import numpy as np

from pipeline import media
from pipeline.atomic import DiskFullError
from pipeline.failures import FailureLog
from pipeline.feature_record import feature_params, record_attrs
from pipeline.hashing import file_sha256
from pipeline.labels import NUM_AVSS_CLASSES, fit_image, read_label
from pipeline.manifest import HashCache, ManifestRow, verify_source
from pipeline.parallel import map_ordered
from pipeline.params import DaskParams, Size2, params_hash
from pipeline.shards import INPUT_DIGEST, PreviousShard, ShardError, ShardWriter, input_digest

KIND = "extract"
# ffmpeg's scale flags (swscale algorithms).
ResizeFilter = Literal[
    "fast_bilinear",
    "bilinear",
    "bicubic",
    "experimental",
    "neighbor",
    "area",
    "bicublin",
    "gauss",
    "sinc",
    "lanczos",
    "spline",
]
SHORT_AUDIO = ("repeat_last", "silence")
# A video extracted whole (frame images, or a source video up to STREAM_SECONDS) holds its arrays (frames
# T*H*W*3 + masks T*H*W + audio T*32000 bytes) until written: a row that needs more fails before allocating.
VIDEO_BUDGET_BYTES = 4 << 30
# Source videos longer than this are decoded a window at a time straight into the shard (in the main
# process, memory one window) instead of whole on a worker.
STREAM_SECONDS = 2 * media.DEFAULT_WINDOW_SECONDS


@feature_params(KIND)
@dataclass
class ExtractParams:
    """``extract`` section of params.yaml."""

    frame_size: Size2 = field(default_factory=lambda: [224, 224])  # [H, W]; AVSBench: 224x224, aspect not kept
    resize_filter: ResizeFilter = "bilinear"  # ffmpeg scale flags; AVSBench used cv2 INTER_LINEAR (no antialias): mean abs diff 5-7 grey levels, see benchmarks
    missing_audio: Literal["silence", "fail"] = (
        "silence"  # silence: keep the video with silent audio (warning) | fail: list it as a failure
    )
    short_audio: Literal["repeat_last", "silence"] = (
        "repeat_last"  # audio too short for T log-mel examples: repeat_last (AVSBench) | silence
    )
    strict: bool = False  # any failed video -> non-zero exit (after writing everything that worked)

    def __post_init__(self) -> None:
        if len(self.frame_size) != 2 or min(self.frame_size) < 8:
            raise ValueError(f"frame_size must be [H, W] with both >= 8, got {self.frame_size}")
        if self.missing_audio not in ("silence", "fail"):
            raise ValueError(f"missing_audio must be 'silence' or 'fail', got {self.missing_audio!r}")
        if self.short_audio not in SHORT_AUDIO:
            raise ValueError(f"short_audio must be one of {SHORT_AUDIO}, got {self.short_audio!r}")

    def hash(self) -> str:
        # strict only changes the exit code, never the shard contents.
        return params_hash({k: v for k, v in asdict(self).items() if k != "strict"})


@dataclass
class ExtractedVideo:
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    warnings: list[str]


def logmel_example_count(samples: int) -> int:
    """Whole VGGish log-mel examples in ``samples`` of 16 kHz audio: 25 ms frames every 10 ms, 96 per example.

    The same count as ``pipeline.audio.logmel.num_examples`` (a test keeps them equal); not imported
    from there because importing ``pipeline.audio`` loads the encoders (torch), which extraction
    workers and the extract stage's DVC dependencies must not need.
    """
    frames = 0 if samples < 400 else 1 + (samples - 400) // 160
    return 0 if frames < 96 else 1 + (frames - 96) // 96


def short_audio_decision(real_samples: int, num_seconds: int, policy: str) -> tuple[int | None, str | None]:
    """(samples to keep, or None to keep the zero-padded T s; a warning or None) for a clip whose stream
    gave ``real_samples`` samples: see :func:`apply_short_audio`."""
    have = logmel_example_count(real_samples)
    if real_samples == 0 or have >= num_seconds:
        return None, None
    seconds = real_samples / media.AUDIO_RATE
    if policy == "repeat_last":
        return real_samples, (
            f"audio {seconds:.2f} s gives {have} of T={num_seconds} log-mel examples: "
            "the last one is repeated (extract.short_audio: repeat_last)"
        )
    return None, (
        f"audio {seconds:.2f} s gives {have} of T={num_seconds} log-mel examples: "
        "the rest is silence (extract.short_audio: silence)"
    )


def apply_short_audio(
    audio: np.ndarray, real_samples: int, num_seconds: int, policy: str
) -> tuple[np.ndarray, str | None]:
    """The audio to store for a clip whose stream gave ``real_samples`` samples, and a warning if short.

    audio: int16 [T*16000], zero-padded past ``real_samples``. When the real audio holds fewer than
    T whole log-mel examples (0.96 s each), ``repeat_last`` stores only the real samples, so the
    log-mel stage repeats the last example as the official AVSBench log-mel does; ``silence``
    keeps the zero padding (the missing examples are log-mel of silence). The decision lives here
    because only extraction knows where the real audio ends.
    """
    keep, warning = short_audio_decision(real_samples, num_seconds, policy)
    return (audio if keep is None else audio[:keep].copy()), warning


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


def _from_video(row: ManifestRow, cfg: ExtractParams, size: tuple[int, int], progress: bool) -> tuple[dict, list[str]]:
    """Frames, audio and frame indices of a row with a source video, plus warnings."""
    T = int(row.num_seconds)
    info = row.media_info()
    if info is None or not info.fps:
        raise media.MediaError(f"{row.source_video}: no video stream")
    clip = media.extract_clip(
        row.source_video,
        T,
        size,
        info=info,
        resize_filter=cfg.resize_filter,
        missing_audio=cfg.missing_audio,
        progress=progress,
    )
    warnings = []
    if clip.decoded_frames <= media.FramePlan.for_clip(T, info.fps, info.duration).wanted(T - 1):
        warnings.append(f"video shorter than {T} s ({clip.decoded_frames} frames): last frame repeated")
    audio, short = apply_short_audio(clip.audio, clip.audio_samples, T, cfg.short_audio)
    warnings += [short] if short else []
    return {
        "frames": clip.frames,
        "audio": audio,
        "indices": clip.frame_indices,
        "audio_source": clip.audio_source,
    }, warnings


def _from_frame_images(row: ManifestRow, cfg: ExtractParams, size: tuple[int, int]) -> tuple[dict, list[str]]:
    """Frames from T pre-extracted images and audio from the row's wav (AVSBench release layouts)."""
    T = int(row.num_seconds)
    frames = _read_frame_images(row.frame_paths, size, row.frame_fit)
    if len(frames) != T:
        raise media.MediaError(f"{row.video_id}: {len(frames)} frame images for T={T}")
    warnings: list[str] = []
    if row.source_audio and Path(row.source_audio).is_file():
        pcm = media.decode_audio(row.source_audio, T)
        audio, short = apply_short_audio(media.fit_audio(pcm, T), pcm.size, T, cfg.short_audio)
        warnings += [short] if short else []
        source = "wav"
    elif cfg.missing_audio == "fail":
        raise media.MediaError(f"{row.source_audio or row.video_id}: audio file missing")
    else:
        audio, source = np.zeros(T * media.AUDIO_RATE, np.int16), "silence (no audio file)"
    return {"frames": frames, "audio": audio, "indices": list(range(T)), "audio_source": source}, warnings


def _ground_truth_window(
    row: ManifestRow, size: tuple[int, int], start: int, count: int
) -> tuple[dict[str, np.ndarray], int]:
    """gt_masks uint8 [n,H,W] and gt_valid bool [n] (False where a second has no label) of seconds
    ``[start, start + n)``, and the number of label pixels of unknown colours."""
    gt = np.zeros((count, *size), np.uint8)
    valid = np.zeros(count, bool)
    unknown = 0
    for t, label in enumerate(row.labels[start : min(int(row.num_seconds), start + count)]):
        if label:
            decoded = read_label(label, row.label_format, size, fit=row.frame_fit)
            gt[t], valid[t] = decoded.ids, True
            unknown += decoded.unknown_pixels
    return {"gt_masks": gt, "gt_valid": valid}, unknown


def _ground_truth(row: ManifestRow, size: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[str]]:
    """gt_masks uint8 [T,H,W] and gt_valid bool [T] (False where a second has no label), plus warnings."""
    truth, unknown = _ground_truth_window(row, size, 0, int(row.num_seconds))
    return truth, _ground_truth_warning(unknown)


def _ground_truth_warning(unknown: int) -> list[str]:
    if not unknown:
        return []
    return [
        f"{unknown} label pixel(s) of colours outside the {NUM_AVSS_CLASSES}-class palette "
        "read as background 0 (as the official loader does)"
    ]


@functools.lru_cache(maxsize=2)
def _hash_cache(path: str) -> HashCache:
    """The source-hash cache, read once per worker (extraction never writes it)."""
    return HashCache(Path(path))


def _check_row(row: ManifestRow, size: tuple[int, int], hash_cache: Path | None, budget: bool) -> None:
    """Refuse a row before any decoding: a failed probe, a clip over the per-video memory budget (when
    held whole), sources that no longer match the row's ``source_sha256``."""
    if row.probe_error:
        raise media.MediaError(row.probe_error)
    needed = int(row.num_seconds) * (size[0] * size[1] * 4 + 2 * media.AUDIO_RATE)
    if budget and needed > VIDEO_BUDGET_BYTES:
        raise media.MediaError(
            f"{row.video_id}: T={row.num_seconds} s at {size[0]}x{size[1]} needs {needed / 2**30:.1f} GiB, "
            f"over the {VIDEO_BUDGET_BYTES >> 30} GiB per-video budget (shorten num_seconds or extract.frame_size)"
        )
    if hash_cache is not None:
        verify_source(row, _hash_cache(str(hash_cache)))


def _row_attrs(row: ManifestRow) -> dict[str, Any]:
    """The attributes of an extracted video that come from its manifest row (``input_digest``: the row as
    written, what decides whether a rerun may reuse the video)."""
    return {
        "source_sha256": row.source_sha256,
        "split": row.split,
        "task": row.task,
        "category": row.category,
        "num_seconds": int(row.num_seconds),
        "source": row.source_video or row.source_frames.split(";")[0],
        "label_format": row.label_format,
        INPUT_DIGEST: input_digest(asdict(row)),
    }


def extract_video(
    row: ManifestRow, cfg: ExtractParams, progress: bool = False, hash_cache: Path | None = None
) -> ExtractedVideo:
    """Frames uint8 [T,H,W,3], audio int16 [T*16000] (fewer samples when ``short_audio: repeat_last``
    keeps a too-short stream as it is), and gt_masks uint8 [T,H,W] + gt_valid bool [T] when the
    dataset has labels. Raises MediaError/ManifestError naming the file on bad input, and ManifestError
    when ``hash_cache`` is given and the sources no longer match the row's ``source_sha256``."""
    size = (int(cfg.frame_size[0]), int(cfg.frame_size[1]))
    _check_row(row, size, hash_cache, budget=True)
    if row.source_video:
        got, warnings = _from_video(row, cfg, size, progress)
    else:
        got, warnings = _from_frame_images(row, cfg, size)
    if got["audio_source"].startswith("silence"):
        warnings.append(f"{got['audio_source']}: audio is all zeros")
    arrays: dict[str, np.ndarray] = {"frames": got["frames"], "audio": got["audio"]}
    if row.label_format != "none":
        truth, label_warnings = _ground_truth(row, size)
        arrays.update(truth)
        warnings += label_warnings
    attrs = {
        **_row_attrs(row),
        "frame_indices": got["indices"],
        "audio_source": got["audio_source"],
        "warnings": warnings,
    }
    return ExtractedVideo(arrays, attrs, warnings)


def streams(row: ManifestRow) -> bool:
    """Whether a row is extracted a window at a time into the shard (a source video over
    :data:`STREAM_SECONDS`) instead of whole on a worker."""
    return bool(row.source_video) and int(row.num_seconds) > STREAM_SECONDS


def stream_video(
    row: ManifestRow,
    cfg: ExtractParams,
    writer: ShardWriter,
    hash_cache: Path | None = None,
    window_seconds: int = media.DEFAULT_WINDOW_SECONDS,
) -> list[str]:
    """Extract a source video into ``writer`` one window (``window_seconds``) at a time, so
    memory holds one window whatever T; the same arrays and attributes as :func:`extract_video`.
    Returns the warnings; raises like it (the partly written video is then removed)."""
    size = (int(cfg.frame_size[0]), int(cfg.frame_size[1]))
    _check_row(row, size, hash_cache, budget=False)
    T, info = int(row.num_seconds), row.media_info()
    if info is None or not info.fps:
        raise media.MediaError(f"{row.source_video}: no video stream")
    shapes = {"frames": (T, *size, 3), "audio": (T * media.AUDIO_RATE,)}
    dtypes = {"frames": np.uint8, "audio": np.int16}
    if row.label_format != "none":
        shapes.update(gt_masks=(T, *size), gt_valid=(T,))
        dtypes.update(gt_masks=np.uint8, gt_valid=bool)
    warnings: list[str] = []
    with writer.begin_video(row.video_id, shapes, dtypes, _row_attrs(row), trimmable=("audio",)) as video:
        indices, real, decoded, unknown = [], 0, 0, 0
        windows = media.iter_clip_windows(
            row.source_video,
            T,
            size,
            window_seconds=window_seconds,
            info=info,
            resize_filter=cfg.resize_filter,
            missing_audio=cfg.missing_audio,
        )
        for window in windows:
            video.write("frames", window.start, window.frames)
            video.write("audio", window.start * media.AUDIO_RATE, window.audio)
            if "gt_masks" in shapes:
                truth, unknown_window = _ground_truth_window(row, size, window.start, len(window.frames))
                video.write("gt_masks", window.start, truth["gt_masks"])
                video.write("gt_valid", window.start, truth["gt_valid"])
                unknown += unknown_window
            indices += window.frame_indices
            real, decoded = real + window.audio_samples, window.decoded_frames
        if decoded <= media.FramePlan.for_clip(T, info.fps, info.duration).wanted(T - 1):
            warnings.append(f"video shorter than {T} s ({decoded} frames): last frame repeated")
        keep, short = short_audio_decision(real, T, cfg.short_audio)
        if keep is not None:
            video.trim("audio", keep)
        warnings += [short] if short else []
        source = "stream" if info.has_audio else "silence (no audio stream)"
        warnings += [f"{source}: audio is all zeros"] if source.startswith("silence") else []
        warnings += _ground_truth_warning(unknown)
        video.attrs.update(frame_indices=indices, audio_source=source, warnings=warnings, params_hash=cfg.hash())
    return warnings


def extract_shard(
    rows: list[ManifestRow],
    out_path: Path,
    cfg: ExtractParams,
    dask_cfg: DaskParams,
    dataset: str = "",
    progress: bool = True,
    hash_cache: Path | None = None,
    reuse: bool = True,
    ffmpeg_hash_cache: Path | None = None,
) -> FailureLog:
    """Extract every row into one shard at ``out_path`` (written atomically, in manifest order); with
    ``hash_cache`` (the manifest's source-hash cache) each video's sources are first checked against
    its ``source_sha256`` (a changed file fails that video only). With ``reuse``, videos whose manifest
    row is unchanged are copied from the previous shard at ``out_path`` (:mod:`pipeline.shards.reuse`);
    source videos over :data:`STREAM_SECONDS` are extracted here a window at a time, the rest on workers.
    ``ffmpeg_hash_cache``: where the ffmpeg binary's digest is kept between runs (:func:`_ffmpeg_identity`)."""
    failures = FailureLog(stage=KIND)
    work = functools.partial(extract_video, cfg=cfg, progress=progress, hash_cache=hash_cache)
    attrs = {"dataset": dataset, "ffmpeg_sha256": _ffmpeg_identity(ffmpeg_hash_cache), **record_attrs(KIND, cfg)}
    with (
        ShardWriter(out_path, kind=KIND, params_hash=cfg.hash(), attrs=attrs) as writer,
        PreviousShard(out_path, writer.file_attrs, enabled=reuse) as previous,
    ):
        reused = {
            r.video_id
            for r in rows
            if previous.matches(r.video_id, INPUT_DIGEST, input_digest(asdict(r))) and _sources_unchanged(r, hash_cache)
        }
        todo = [r for r in rows if r.video_id not in reused and not streams(r)]
        outcomes = iter(
            map_ordered(work, todo, dask_cfg=dask_cfg, desc=f"extract {out_path.stem}", progress=progress)
            if todo
            else ()
        )
        for row in rows:
            source = row.source_video or row.source_audio
            if row.video_id in reused:
                for warning in previous.copy(writer, row.video_id):
                    failures.warn(row.video_id, warning, source=source)
            elif streams(row):
                _stream_logged(row, cfg, writer, hash_cache, failures)
            else:
                _write_outcome(writer, row, next(outcomes)[1], cfg, failures)
        if previous.reason not in ("no previous shard", "reuse turned off"):
            print(f"extract {out_path.name}: {previous.summary(len(rows))}")
    return failures


def _sources_unchanged(row: ManifestRow, hash_cache: Path | None) -> bool:
    """Whether the files behind ``row`` still match it (a reused video must not outlive an edited source or
    label: such a video goes through extraction, which fails it with the reason)."""
    if hash_cache is None:
        return True
    try:
        verify_source(row, _hash_cache(str(hash_cache)))
    except (media.MediaError, ValueError, OSError):
        return False
    return True


def _write_outcome(writer: ShardWriter, row: ManifestRow, outcome: Any, cfg: ExtractParams, failures: FailureLog):
    source = row.source_video or row.source_audio
    if not outcome.ok:
        failures.add(row.video_id, outcome.error or "unknown error", source=source)
        return
    result: ExtractedVideo = outcome.value
    for warning in result.warnings:
        failures.warn(row.video_id, warning, source=source)
    writer.write_video(row.video_id, result.arrays, {**result.attrs, "params_hash": cfg.hash()})


def _stream_logged(
    row: ManifestRow, cfg: ExtractParams, writer: ShardWriter, hash_cache: Path | None, failures: FailureLog
) -> None:
    """:func:`stream_video`, a bad video recorded as a failure (a full disk or a shard error still stops)."""
    source = row.source_video
    try:
        warnings = stream_video(row, cfg, writer, hash_cache)
    except (DiskFullError, ShardError):
        raise
    except Exception as error:  # noqa: BLE001 - one bad video never aborts the shard
        failures.add(row.video_id, str(error) or type(error).__name__, source)
        return
    for warning in warnings:
        failures.warn(row.video_id, warning, source=source)


def _ffmpeg_identity(cache: Path | None = None) -> str:
    """sha256 of the ffmpeg binary that decodes (another build may decode other pixels), or "unknown".

    Hashing the ~80 MB binary costs ~0.15 s, a tenth of a rerun that reuses every video: with ``cache`` (a
    :class:`HashCache` file) the digest is kept between runs while the binary's path, inode, size, mtime
    and ctime stay the same; a replaced or edited binary is hashed again."""
    try:
        exe = media.ffmpeg_exe()
        if cache is None:
            return file_sha256(exe)
        hashes = HashCache(cache)
        digest = hashes.sha256(exe)
    except (OSError, media.MediaError):
        return "unknown"
    try:
        hashes.save()  # written only when the digest was computed
    except OSError as error:  # only a cache: the next run hashes the binary again
        warn(f"{cache}: ffmpeg digest not kept ({error})", stacklevel=2)
    return digest
