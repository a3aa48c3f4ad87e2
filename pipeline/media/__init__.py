"""Every ffmpeg call of the project lives here (probe, frame + audio extraction, encoding).

ffmpeg is taken from PATH when present, else the static binary shipped in the ``imageio-ffmpeg``
wheel, so nothing needs root. ffprobe is never required: :func:`probe` parses ``ffmpeg -i``.
Commands are built with ffmpeg-python (argument lists, never a shell string).

Local files only: every path handed to ffmpeg first goes through :func:`check_local_media_path`
(URLs, protocol prefixes, directories and devices are refused with a one-line error) and is then
passed as ``file:/absolute/path``, so names such as ``concat:a.mp4|b.mp4``, ``pipe:x.mp4`` or
``-x.mp4`` are plain files. Inputs are opened with ``-protocol_whitelist file`` and a demuxer
whitelist without the playlist/script demuxers (concat, hls, dash, ...) that would open other
files or the network on a file's behalf.

Long videos: :func:`iter_clip_windows` decodes a video once and yields the AVSBench frames and the
audio a window of seconds at a time; the ffmpeg command has the same length for 1 s and for 2 h
(``select`` uses ``mod(n, fps)``), and only one window is held in memory. Nothing is written to
temporary files: frames and audio come through pipes, so a killed run leaves nothing behind.

Modules: :mod:`.command` (the binary, errors, local-file checks), :mod:`.probing` (``ffmpeg -i``),
:mod:`.frames` (which frames AVSBench keeps), :mod:`.streams` (reading a running ffmpeg),
:mod:`.decoding` (clips and whole files), :mod:`.encoding` (writing videos). Import from
``pipeline.media``.
"""

from __future__ import annotations

import importlib

from pipeline.media.command import (
    AUDIO_RATE,
    MediaError,
    NotLocalFileError,
    check_local_media_path,
    demuxer_whitelist,
    ffmpeg_exe,
    ffmpeg_url,
    pinned_ffmpeg_exe,
    refuse_remote,
    shown_path,
)
from pipeline.media.frames import FramePlan, avsbench_frame_indices
from pipeline.media.probing import MediaInfo, parse_probe, probe, seconds_in

# Decoding and encoding need numpy (~0.1 s to import): they are imported when first asked for, so that
# `avs manifest`, which only probes, does without it. Full module names, so that the code digest of a stage
# (pipeline/code_digest.py) sees these imports too.
_DECODING, _ENCODING = "pipeline.media.decoding", "pipeline.media.encoding"
_LAZY = {
    "DEFAULT_WINDOW_SECONDS": _DECODING,
    "LONG_VIDEO_SECONDS": _DECODING,
    "ClipWindow": _DECODING,
    "Extracted": _DECODING,
    "decode_all_frames": _DECODING,
    "decode_audio": _DECODING,
    "extract_clip": _DECODING,
    "fit_audio": _DECODING,
    "iter_clip_windows": _DECODING,
    "read_audio": _DECODING,
    "encode_video": _ENCODING,
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "AUDIO_RATE",
    "DEFAULT_WINDOW_SECONDS",
    "LONG_VIDEO_SECONDS",
    "ClipWindow",
    "Extracted",
    "FramePlan",
    "MediaError",
    "MediaInfo",
    "NotLocalFileError",
    "avsbench_frame_indices",
    "check_local_media_path",
    "decode_all_frames",
    "decode_audio",
    "demuxer_whitelist",
    "encode_video",
    "extract_clip",
    "ffmpeg_exe",
    "ffmpeg_url",
    "fit_audio",
    "iter_clip_windows",
    "parse_probe",
    "pinned_ffmpeg_exe",
    "probe",
    "read_audio",
    "refuse_remote",
    "seconds_in",
    "shown_path",
]
