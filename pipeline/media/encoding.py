"""Encoding frames (+ audio) to a video file through pipes, written atomically."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import ffmpeg  # ffmpeg-python: builds argument lists for us
import numpy as np

from pipeline.atomic import atomic_path
from pipeline.media.command import (
    AUDIO_RATE,
    PORTABLE_GLOBAL_ARGS,
    MediaError,
    _cli,
    _last_error_line,
    ffmpeg_exe,
    pinned_ffmpeg_exe,
    shown_path,
)


def _frame_chunks(frames: np.ndarray | Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(first chunk [n,H,W,3] uint8, iterator over all chunks) of an array or an iterable of arrays."""
    chunks = iter([frames]) if isinstance(frames, np.ndarray) else iter(frames)
    first = next(chunks, None)
    if first is None or np.asarray(first).ndim != 4:
        raise ValueError("frames must be uint8 [N,H,W,3] or an iterable of such chunks")
    rest = (np.ascontiguousarray(chunk, dtype=np.uint8) for chunk in chunks)
    first = np.ascontiguousarray(first, dtype=np.uint8)
    return first, (chunk for part in ([first], rest) for chunk in part)


def _audio_chunks(audio: np.ndarray | Iterable[np.ndarray] | None) -> tuple[int, Iterator[np.ndarray] | None]:
    """(channels, iterator over int16 chunks [S] or [S,C]) of an array or an iterable of arrays; (1, None)
    without audio."""
    if audio is None:
        return 1, None
    chunks = iter([audio]) if isinstance(audio, np.ndarray) else iter(audio)
    first = next(chunks, None)
    if first is None:
        raise ValueError("audio must be int16 [S] or [S,C], or an iterable of such chunks")
    first = np.ascontiguousarray(first, dtype=np.int16)
    rest = (np.ascontiguousarray(chunk, dtype=np.int16) for chunk in chunks)
    return (1 if first.ndim == 1 else first.shape[1]), (chunk for part in ([first], rest) for chunk in part)


# Pinned encodes must give the same bytes on every x86-64 machine, but the SIMD paths that ffmpeg and
# x264 pick from the CPU are not bit-exact with their C code: on one AVX-512 machine the rgb24 ->
# yuv420p conversion (swscale) and x264 each changed the demo mp4s' bytes when their SIMD was turned
# off. So pinned encodes run the C code only (about 4x slower: 0.8 s for a 5 s 224x224 demo clip).
PORTABLE_X264_PARAMS = "asm=0"  # x264 detects the CPU itself: C code only


def _encode_args(
    out: Path,
    container: str,
    width: int,
    height: int,
    fps: float,
    audio_fd: int | None,
    audio_channels: int,
    audio_rate: int,
    crf: int,
    vcodec: str,
    pts_expr: str | None,
    preset: str,
    portable: bool = False,
) -> list[str]:
    video_stream = ffmpeg.input(
        "pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps
    ).video
    if pts_expr:
        # A fine time base first, so sub-frame timestamps are not rounded into duplicates (dropped frames).
        video_stream = video_stream.filter("settb", "1/1000").filter("setpts", pts_expr)
    streams = [video_stream]
    out_kwargs: dict = dict(vcodec=vcodec, threads=1, map_metadata=-1, fflags="+bitexact", flags="+bitexact")
    if vcodec == "libx264":
        out_kwargs.update(pix_fmt="yuv420p", crf=crf, preset=preset)
        if portable:
            out_kwargs["x264-params"] = PORTABLE_X264_PARAMS
    if container == "mp4":
        out_kwargs.update(movflags="+faststart")
    if pts_expr:
        out_kwargs.update(fps_mode="passthrough", enc_time_base="1/1000")
    if audio_fd is not None:
        streams.append(ffmpeg.input(f"pipe:{audio_fd}", format="s16le", ar=audio_rate, ac=audio_channels).audio)
        out_kwargs.update(acodec="aac", audio_bitrate="128k")
    args = _cli(
        ffmpeg.output(*streams, "file:" + os.path.abspath(out), format=container, **out_kwargs).global_args("-y")
    )
    return [*PORTABLE_GLOBAL_ARGS, *args] if portable else args


def _feed(stream, chunks: Iterable[bytes | np.ndarray]) -> None:
    """Write every chunk to a pipe of ffmpeg's, then close it; a pipe ffmpeg closed ends the feed quietly."""
    try:
        with stream:
            for chunk in chunks:
                stream.write(memoryview(chunk).cast("B") if isinstance(chunk, np.ndarray) else chunk)
    except (BrokenPipeError, ValueError, OSError):
        pass  # ffmpeg stopped reading; its exit code and stderr say why


def encode_video(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | Iterable[np.ndarray] | None = None,
    audio_rate: int = AUDIO_RATE,
    crf: int = 18,
    vcodec: str = "libx264",
    pts_expr: str | None = None,
    preset: str = "medium",
    pinned: bool = False,
) -> None:
    """Write frames uint8 [N,H,W,3] (+ mono/multichannel int16 audio [S] or [S,C]) as a video file.

    ``frames`` may also be an iterable of [n,H,W,3] chunks, and ``audio`` of [s] or [s,C] chunks, so long
    videos are written without holding them. Default H.264 (yuv420p, so H and W must be even) + AAC in mp4; ``vcodec="ffv1"``
    (any size, lossless, use .mkv) and ``pts_expr`` (an ffmpeg ``setpts`` expression, giving
    variable frame rate) exist to make awkward test media; ``preset``: x264's speed/size trade-off
    (benchmarks make long videos with "ultrafast"). Frames and audio reach ffmpeg through
    pipes; the file is written atomically (pipeline.atomic). Single-threaded x264 and bitexact
    muxer/encoder flags so the same input always gives the same bytes; ``pinned`` encodes with
    :func:`pinned_ffmpeg_exe` and without CPU-specific code (:data:`PORTABLE_GLOBAL_ARGS`,
    :data:`PORTABLE_X264_PARAMS`) so they are the same on every x86-64 machine.
    """
    path = Path(path)
    first, chunks = _frame_chunks(frames)
    _, height, width, _ = first.shape
    channels, pcm = _audio_chunks(audio)
    container = {".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm"}.get(path.suffix.lower(), "mp4")
    with atomic_path(path) as tmp:
        read_fd, write_fd = os.pipe() if pcm is not None else (None, None)
        try:
            args = _encode_args(
                tmp, container, width, height, fps, read_fd, channels, audio_rate, crf, vcodec, pts_expr, preset, pinned
            )
            exe = pinned_ffmpeg_exe() if pinned else ffmpeg_exe()
            proc = subprocess.Popen(
                [exe, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=() if read_fd is None else (read_fd,),
            )
        except OSError as exc:
            if write_fd is not None:
                os.close(write_fd)
            raise MediaError(f"{shown_path(str(path))}: cannot run ffmpeg for encoding: {exc}") from exc
        finally:
            if read_fd is not None:
                os.close(read_fd)  # the child holds its own copy
        feeders = [threading.Thread(target=_feed, args=(proc.stdin, chunks), daemon=True)]
        if pcm is not None:
            feeders.append(threading.Thread(target=_feed, args=(os.fdopen(write_fd, "wb"), pcm), daemon=True))
        for feeder in feeders:
            feeder.start()
        stderr = proc.stderr.read()
        for feeder in feeders:
            feeder.join()
        if proc.wait() != 0:
            raise MediaError(f"{shown_path(str(path))}: ffmpeg could not encode it ({_last_error_line(stderr)})")
