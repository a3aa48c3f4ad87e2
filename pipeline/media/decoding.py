"""Decoding: the AVSBench frames and audio of a clip, a window at a time, and whole-file decoding."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg  # ffmpeg-python: builds argument lists for us
import numpy as np

from pipeline.media.command import (
    AUDIO_RATE,
    PORTABLE_GLOBAL_ARGS,
    MediaError,
    _cli,
    _input,
    _last_error_line,
    _run,
    shown_path,
)
from pipeline.media.frames import FramePlan
from pipeline.media.probing import MediaInfo, probe
from pipeline.media.streams import _AudioReader, _FrameReader, _Pipe


@dataclass
class ClipWindow:
    """Seconds ``[start, start + w)`` of a clip, as :func:`iter_clip_windows` yields them."""

    start: int
    frames: np.ndarray  # uint8 [w,H,W,3], the AVSBench frame of each second (clamped)
    frame_indices: list[int]  # decoded-frame index taken for each second (after clamping)
    audio: np.ndarray  # int16 [w*16000], 16 kHz mono, zeros past the end of the audio stream
    audio_samples: int  # samples of real audio in ``audio`` (the rest is padding)
    decoded_frames: int  # highest decoded index seen so far + 1


DEFAULT_WINDOW_SECONDS = 64  # 64 s of 224x224 frames: 9.6 MB of frames + 2 MB of audio per window


def _video_args(path: str | Path, plan: FramePlan, size: tuple[int, int], resize_filter: str) -> list[str]:
    # setpts=N stamps each frame with its decoding index; only the kept frames are scaled.
    height, width = size
    stream = _input(path).video
    if plan.resample:
        stream = stream.filter("fps", 1)  # below 1 fps: one frame per second, each shown frame repeated
    stream = (
        stream.filter("setpts", "N")
        .filter("select", plan.select_expression())
        .filter("scale", width, height, flags=resize_filter)
    )
    stop_after = {} if plan.tail_start is not None else {"frames:v": plan.num_seconds}  # stop decoding when done
    return _cli(
        ffmpeg.output(stream, "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", **stop_after)
    )


def _audio_args(path: str | Path, num_seconds: int) -> list[str]:
    # First audio stream, downmixed to mono and resampled to 16 kHz, at most T seconds. Without
    # CPU-specific code: AAC decoding and resampling gave other samples with SSE2 only than with AVX
    # (frames did not change with the SIMD level, and video decoding costs far more, so it keeps it).
    args = _cli(
        ffmpeg.output(
            _input(path)["a:0"], "pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=AUDIO_RATE, t=num_seconds
        )
    )
    return [*PORTABLE_GLOBAL_ARGS, *args]


def _check_video(path: str | Path, info: MediaInfo, num_seconds: int, missing_audio: str) -> None:
    if num_seconds < 1:
        raise MediaError(f"{shown_path(str(path))}: the number of seconds T must be >= 1, got {num_seconds}")
    if not info.has_video:
        raise MediaError(f"{shown_path(str(path))}: no video stream")
    if not info.fps or info.fps <= 0:
        raise MediaError(f"{shown_path(str(path))}: frame rate unknown")
    if not info.has_audio and missing_audio == "fail":
        raise MediaError(f"{shown_path(str(path))}: no audio stream")


def iter_clip_windows(
    path: str | Path,
    num_seconds: int,
    size: tuple[int, int] = (224, 224),
    *,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    info: MediaInfo | None = None,
    resize_filter: str = "bilinear",
    missing_audio: str = "silence",
    with_audio: bool = True,
) -> Iterator[ClipWindow]:
    """Decode ``path`` once and yield its T AVSBench frames and T s of audio, ``window_seconds`` at a time.

    Frames: for second l the decoded frame ``int(l*fps + 15/16*fps)`` (fps rounded), scaled to
    ``size`` = (H, W) with swscale ``resize_filter`` (aspect not kept, like AVSBench); a second past
    the last decoded frame takes the last frame (AVSBench's clamp). Audio: the first stream,
    mono 16 kHz int16, zeros past its end; no audio stream gives silence (``missing_audio="silence"``)
    or :class:`MediaError` (``"fail"``); ``with_audio=False`` skips the audio (all zeros), e.g. for a
    second pass at another frame size. Two ffmpeg processes (frames, audio) stream through pipes;
    memory holds one window. Each yielded window's arrays are new (the caller may keep them).
    """
    info = info or probe(path)
    _check_video(path, info, num_seconds, missing_audio)
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be >= 1, got {window_seconds}")
    plan = FramePlan.for_clip(num_seconds, info.fps, info.duration)
    video = _Pipe(_video_args(path, plan, size, resize_filter), path, "frames")
    audio = _Pipe(_audio_args(path, num_seconds), path, "audio") if info.has_audio and with_audio else None
    try:
        frames_in, audio_in = _FrameReader(video, plan, size), _AudioReader(audio)
        for start in range(0, num_seconds, window_seconds):
            count = min(window_seconds, num_seconds - start)
            frames = np.empty((count, *size, 3), np.uint8)
            indices = [frames_in.fill(start + k, frames[k]) for k in range(count)]
            pcm = np.zeros(count * AUDIO_RATE, np.int16)
            real = audio_in.fill(pcm)
            yield ClipWindow(start, frames, indices, pcm, real, frames_in.last_index + 1)
    finally:
        video.stop()
        if audio is not None:
            audio.stop()


@dataclass
class Extracted:
    frames: np.ndarray  # uint8 [T,H,W,3]
    frame_indices: list[int]  # decoded-frame index taken for each second (after clamping)
    audio: np.ndarray  # int16 [T*16000], zero-padded past the end of the audio stream
    audio_source: str  # "stream" or "silence (no audio stream)"
    decoded_frames: int  # highest decoded frame index seen + 1 (a lower bound when not decoded to the end)
    audio_samples: int = 0  # samples of real audio in ``audio`` before the padding


LONG_VIDEO_SECONDS = 120  # a per-video progress bar (seconds decoded) from this length on


def extract_clip(
    path: str | Path,
    num_seconds: int,
    size: tuple[int, int] = (224, 224),
    info: MediaInfo | None = None,
    resize_filter: str = "bilinear",
    missing_audio: str = "silence",
    progress: bool = False,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
) -> Extracted:
    """The T frames AVSBench keeps and T s of 16 kHz mono audio of ``path`` (see :func:`iter_clip_windows`).

    Memory: the result plus one window. ``progress`` shows a bar for clips of at least
    :data:`LONG_VIDEO_SECONDS` seconds.
    """
    from tqdm.auto import tqdm

    info = info or probe(path)
    frames = np.empty((max(num_seconds, 0), *size, 3), np.uint8)
    audio = np.zeros(max(num_seconds, 0) * AUDIO_RATE, np.int16)
    indices: list[int] = []
    real = decoded = 0
    with tqdm(
        total=num_seconds,
        unit="s",
        desc=f"decode {Path(path).name}"[:40],
        leave=False,
        dynamic_ncols=True,
        disable=not progress or num_seconds < LONG_VIDEO_SECONDS,
    ) as bar:
        for window in iter_clip_windows(
            path,
            num_seconds,
            size,
            window_seconds=window_seconds,
            info=info,
            resize_filter=resize_filter,
            missing_audio=missing_audio,
        ):
            stop = window.start + len(window.frames)
            frames[window.start : stop] = window.frames
            audio[window.start * AUDIO_RATE : stop * AUDIO_RATE] = window.audio
            indices += window.frame_indices
            real, decoded = real + window.audio_samples, window.decoded_frames
            bar.update(len(window.frames))
    source = "stream" if info.has_audio else "silence (no audio stream)"
    return Extracted(frames, indices, audio, source, decoded, real)


# ------------------------------------------------------------------------------ whole-file decoding
def fit_audio(pcm: np.ndarray, num_seconds: int) -> np.ndarray:
    """int16 audio [N] padded with zeros or trimmed to exactly ``num_seconds`` at 16 kHz (the one pad/trim)."""
    total = num_seconds * AUDIO_RATE
    audio = np.zeros(total, np.int16)
    audio[: min(total, pcm.size)] = pcm[:total]
    return audio


def decode_audio(path: str | Path, num_seconds: int) -> np.ndarray:
    """The first audio stream of any audio (or video) file as int16 mono 16 kHz, at most ``num_seconds``
    long and not padded (its length says how much audio the file really has)."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{shown_path(str(path))}: no audio stream")
    proc = _run(_audio_args(path, num_seconds), "audio decoding", path)
    if proc.returncode != 0:
        raise MediaError(
            f"{shown_path(str(path))}: ffmpeg could not decode the audio ({_last_error_line(proc.stderr)})"
        )
    return np.frombuffer(proc.stdout[: len(proc.stdout) // 2 * 2], np.int16)


def read_audio(path: str | Path, num_seconds: int) -> np.ndarray:
    """Decode any audio (or video) file to int16 mono 16 kHz of exactly ``num_seconds`` (pad/trim)."""
    return fit_audio(decode_audio(path, num_seconds), num_seconds)


def decode_all_frames(
    path: str | Path, size: tuple[int, int] | None = None, resize_filter: str | None = None
) -> np.ndarray:
    """Decode every frame of ``path`` as uint8 [N,H,W,3] (native size unless ``size`` = (H, W)).

    Used by benchmarks (the AVSBench baseline decodes everything), tests and ``avs predict``;
    ``resize_filter``: swscale flags (None: ffmpeg's default).
    """
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{shown_path(str(path))}: no video stream")
    height, width = size if size else (info.height, info.width)
    stream = _input(path).video
    if size:
        stream = stream.filter("scale", width, height, **({"flags": resize_filter} if resize_filter else {}))
    proc = _run(
        _cli(stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")), "frame decoding", path
    )
    if proc.returncode != 0:
        raise MediaError(f"{shown_path(str(path))}: ffmpeg could not decode it ({_last_error_line(proc.stderr)})")
    frame_bytes = height * width * 3
    count = len(proc.stdout) // frame_bytes
    return np.frombuffer(proc.stdout[: count * frame_bytes], np.uint8).reshape(count, height, width, 3)
