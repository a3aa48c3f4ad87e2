"""Manifest schema: one CSV per dataset listing every video, where its media and labels are, and its shard.

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
labels_sha256    sha256 of the label images' sha256s in order (``-`` for an unlabelled second;
                 empty without labels, or in a manifest written before the column existed)
================ ============================================================================

Rows are validated when read (:func:`pipeline.manifest.files.read_manifest`): each bad field is one
line naming the CSV file, line and column.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from pipeline import media
from pipeline.params import NonNegativeInt

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

# Bounds of the probed columns: what ffmpeg reports for real media, with room to spare. A value outside
# them is a hand-edited or corrupted manifest, refused when the CSV is read rather than when a worker
# allocates for it (``num_seconds``'s memory rule is in docs/pipeline.md).
MAX_DURATION = 7 * 24 * 3600.0  # seconds
MAX_FPS = 1000.0
MAX_AUDIO_CHANNELS = 64  # ffmpeg's largest channel layout
MAX_AUDIO_RATE = 768_000  # Hz
MAX_SECONDS = 24 * 3600  # T; extraction also bounds T * H * W * 3 by its per-video memory budget
MIN_PADDING = 10  # seconds a row may ask beyond its duration (the last frame is repeated), at the least


def _number(text: str, *, low: float, high: float, integer: bool, low_open: bool) -> str:
    """``text`` unless it is not empty and not a finite number in [low, high] (``(low, high]`` if low_open)."""
    if text == "":
        return text
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ValueError(f"must be {'an integer' if integer else 'a number'}, got {text!r}") from None
    if (
        value != value
        or value in (float("inf"), float("-inf"))
        or not low <= value <= high
        or (low_open and value == low)
    ):
        bracket = "(" if low_open else "["
        raise ValueError(f"must be a finite number in {bracket}{low:g}, {high:g}], got {text!r}")
    return text


def _bounded(*, low: float, high: float, integer: bool = False, low_open: bool = False) -> Callable[[str], str]:
    return functools.partial(_number, low=low, high=high, integer=integer, low_open=low_open)


_PROBED_CHECKS = {
    "duration": _bounded(low=0, high=MAX_DURATION),
    "fps": _bounded(low=0, high=MAX_FPS, low_open=True),
    "audio_channels": _bounded(low=1, high=MAX_AUDIO_CHANNELS, integer=True),
    "audio_rate": _bounded(low=1, high=MAX_AUDIO_RATE, integer=True),
}


PROBED_COLUMNS = ("duration", "fps", "audio_channels", "audio_rate")


def probed_value_error(name: str, text: str) -> str | None:
    """Why ``text`` is not a valid value of probed column ``name`` (None: it is)."""
    try:
        _PROBED_CHECKS[name](text)
    except ValueError as exc:
        return str(exc)
    return None


def _sha256_hex(text: str) -> str:
    if text and (len(text) != 64 or text.strip("0123456789abcdef")):
        raise ValueError(f"must be 64 lowercase hex digits (a sha256) or empty, got {text[:70]!r}")
    return text


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
    source_sha256: Annotated[str, AfterValidator(_sha256_hex)] = ""
    duration: Annotated[str, AfterValidator(_PROBED_CHECKS["duration"])] = ""  # text, written back as read
    fps: Annotated[str, AfterValidator(_PROBED_CHECKS["fps"])] = ""
    audio_channels: Annotated[str, AfterValidator(_PROBED_CHECKS["audio_channels"])] = ""
    audio_rate: Annotated[str, AfterValidator(_PROBED_CHECKS["audio_rate"])] = ""
    num_seconds: Annotated[NonNegativeInt, Field(le=MAX_SECONDS)] = 5  # 0 only on rows whose probe failed
    label_paths: LocalSources = ""
    label_format: Literal["binary_png", "voc_rgb", "none"] = "none"
    shard: NonNegativeInt = 0
    probe_error: str = ""
    frame_fit: Literal["stretch", "crop"] = "stretch"
    labels_sha256: Annotated[str, AfterValidator(_sha256_hex)] = ""  # editing a mask changes the shard slice

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
OPTIONAL_COLUMNS = {"frame_fit": "stretch", "labels_sha256": ""}  # added later: manifests written before still read


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def validate_video_id(video_id: str, where: str) -> str:
    """Reject ids that are empty, hold control characters (a newline would split a CSV line or a log
    line) or could escape or alias an output folder (absolute, ``..``, ``.``, backslashes)."""
    if not video_id or not video_id.strip():
        raise ManifestError(f"{where}: empty video id")
    if _CONTROL_CHARACTER.search(video_id):
        raise ManifestError(f"{where}: video id {video_id!r} holds a control character (newline, tab, ...)")
    # A leading "/" is what makes a POSIX path absolute (no PurePosixPath: this runs twice per video listed).
    if video_id.startswith(("/", "\\")) or (len(video_id) > 1 and video_id[1] == ":"):
        raise ManifestError(f"{where}: video id {video_id!r} is an absolute path")
    if any(part in ("..", ".") for part in video_id.split("/")) or "\\" in video_id:
        raise ManifestError(f"{where}: video id {video_id!r} would escape the output folder")
    return video_id


def padding_limit(duration: float) -> int:
    """Most seconds T a row of a ``duration`` s source may ask for: the duration again (the last frame is
    repeated for the rest), at least ``MIN_PADDING`` s more; beyond that T is a wrong manifest."""
    whole = math.ceil(duration)
    return whole + max(MIN_PADDING, whole)


def shard_of(video_id: str, num_shards: int) -> int:
    """Stable shard of a video: the first 8 bytes of sha256(id) modulo ``num_shards``."""
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards
