"""What a media file holds, from the banner of ``ffmpeg -i`` (ffprobe is never required)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.media.command import (
    _SCRIPT_MAGIC,
    MediaError,
    _input_options,
    _last_error_line,
    _run,
    check_local_media_path,
    ffmpeg_url,
    shown_path,
)


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffmpeg -i`` tells about a file (no ffprobe needed)."""

    duration: float | None  # seconds
    fps: float | None  # average/nominal frame rate of the first video stream
    width: int | None
    height: int | None
    audio_rate: int | None  # Hz of the first audio stream
    audio_channels: int | None

    @property
    def has_video(self) -> bool:
        return self.width is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_rate is not None


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (.*)")
_SIZE = re.compile(r"(?:^|[ ,])(\d{2,5})x(\d{2,5})(?:[ ,\[]|$)")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_RATE = re.compile(r"(\d+) Hz")
_LAYOUTS = {
    "mono": 1,
    "stereo": 2,
    "2.1": 3,
    "3.0": 3,
    "quad": 4,
    "4.0": 4,
    "5.0": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.1": 7,
    "7.1": 8,
    "7.1(wide)": 8,
}


def _channels(audio_desc: str) -> int | None:
    fields = [f.strip() for f in audio_desc.split(",")]
    for field in fields[2:4] if len(fields) > 2 else []:
        if field in _LAYOUTS:
            return _LAYOUTS[field]
        m = re.match(r"(\d+) channels", field)
        if m:
            return int(m.group(1))
    return None


def parse_probe(stderr: str) -> MediaInfo:
    """Parse the banner ``ffmpeg -i FILE`` prints to stderr."""
    duration = None
    if (m := _DURATION.search(stderr)) is not None:
        h, mi, s = m.groups()
        duration = int(h) * 3600 + int(mi) * 60 + float(s)
    width = height = None
    fps = None
    if (v := _VIDEO.search(stderr)) is not None:
        desc = v.group(1)
        if (s := _SIZE.search(desc)) is not None:
            width, height = int(s.group(1)), int(s.group(2))
        if (f := _FPS.search(desc)) is not None:
            fps = float(f.group(1)) * (1000.0 if f.group(2) else 1.0)
    rate = channels = None
    if (a := _AUDIO.search(stderr)) is not None:
        desc = a.group(1)
        if (r := _RATE.search(desc)) is not None:
            rate = int(r.group(1))
        channels = _channels(desc)
    return MediaInfo(duration, fps, width, height, rate, channels)


def _is_script(path: Path) -> bool:
    """Whether a file starts like a playlist or script that refers to other files (for the error message)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(256).lstrip().startswith(_SCRIPT_MAGIC)
    except OSError:
        return False


def probe(path: str | Path) -> MediaInfo:
    """Read duration, frame rate, size and audio layout of ``path`` with ``ffmpeg -i``.

    Raises :class:`MediaError` naming the file when it is missing, empty, not local (see
    :func:`check_local_media_path`) or not a media file.
    """
    local = check_local_media_path(path)
    if local.stat().st_size == 0:
        raise MediaError(f"{shown_path(str(path))}: empty file (0 bytes)")
    options = [arg for key, value in _input_options().items() for arg in (f"-{key}", value)]
    proc = _run(["-hide_banner", "-nostdin", *options, "-i", ffmpeg_url(local)], "probe", path)
    info = parse_probe(proc.stderr.decode("utf-8", "replace"))
    if not info.has_video and not info.has_audio:
        if _is_script(local):
            raise MediaError(
                f"{shown_path(str(path))}: a playlist or script that refers to other files; "
                "only self-contained media files are read"
            )
        raise MediaError(f"{shown_path(str(path))}: not a readable audio/video file ({_last_error_line(proc.stderr)})")
    return info


def seconds_in(info: MediaInfo) -> int:
    """Whole seconds of a clip (at least 1): the T used when a source does not fix it."""
    return max(1, int(math.floor(info.duration or 0.0)))
