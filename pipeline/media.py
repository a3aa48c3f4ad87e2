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
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg  # ffmpeg-python: builds argument lists for us
import numpy as np

from pipeline.atomic import atomic_path

AUDIO_RATE = 16_000  # Hz, the rate every AVS audio encoder expects


class MediaError(RuntimeError):
    """A media file could not be read; the message names the file and the reason."""


class NotLocalFileError(MediaError):
    """A media path is a URL, has a protocol prefix, or is not a local regular file."""


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$AVS_FFMPEG``, then the pinned imageio-ffmpeg binary, then PATH.

    The pinned binary comes first so that decoding and scaling (and so every shard and every hash in
    dvc.lock) are the same on every machine, whatever ffmpeg the machine has; PATH is the fallback for
    platforms the wheel ships no binary for."""
    explicit = os.environ.get("AVS_FFMPEG")
    if explicit:
        return explicit
    try:
        return pinned_ffmpeg_exe()
    except MediaError:
        on_path = shutil.which("ffmpeg")
        if on_path:
            return on_path
        raise


@functools.lru_cache(maxsize=1)
def pinned_ffmpeg_exe() -> str:
    """The static ffmpeg inside the imageio-ffmpeg wheel (its version is pinned by pyproject), never
    PATH or an environment override: the one encoder for files that must be byte-identical everywhere."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise MediaError("imageio-ffmpeg is not installed: it provides the pinned ffmpeg") from exc
    shipped = sorted((Path(imageio_ffmpeg.__file__).parent / "binaries").glob("ffmpeg-*"))
    if not shipped:
        raise MediaError("the imageio-ffmpeg wheel holds no ffmpeg binary for this platform")
    return str(shipped[0])


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


# ------------------------------------------------------------------------------ local files only
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PROTOCOL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Demuxers that open other files or the network on a file's behalf (playlists, concat scripts, SDP,
# image-sequence patterns); capture devices are left out as well (see demuxer_whitelist).
_REFUSED_DEMUXERS = frozenset({"concat", "hls", "applehttp", "dash", "imf", "sdp", "rtp", "rtsp", "image2"})
_SCRIPT_MAGIC = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"v=0")


def shown_path(text: str, limit: int = 80) -> str:
    """A path as messages show it: whole when short, else "..." and its last ``limit`` characters (one-line errors)."""
    return text if len(text) <= limit else "..." + text[-limit:]


def refuse_remote(path: str | os.PathLike) -> str:
    """``path`` as text, unless it is a URL or starts with a protocol prefix (``pipe:``, ``concat:``, ...)
    that names no existing file: :class:`NotLocalFileError` then. Needs no file to exist (manifest rows
    are checked with it when read)."""
    text = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    if not text or "\x00" in text:
        raise NotLocalFileError(f"{shown_path(repr(text))}: not a file name")
    if _URL.match(text):
        raise NotLocalFileError(f"{shown_path(text)}: is a URL; only local files are read")
    if (prefix := _PROTOCOL.match(text)) and not Path(text).is_file():
        raise NotLocalFileError(
            f"{shown_path(text)}: has a protocol prefix ({prefix.group(1)}:); only local files are read"
        )
    return text


def check_local_media_path(path: str | os.PathLike) -> Path:
    """The absolute path of a local regular file, else :class:`NotLocalFileError` (one line naming it).

    Refused: URLs (``http://...``), names starting with a protocol prefix (``pipe:``, ``concat:``,
    ``file:``, ...) unless a file of that very name exists, missing files, directories, devices and
    FIFOs. Every path passes through here before it reaches ffmpeg; manifest readers call it too.
    """
    text = refuse_remote(path)
    local = Path(text)
    if not local.exists():
        raise NotLocalFileError(f"{shown_path(text)}: no such file")
    if not local.is_file():
        raise NotLocalFileError(f"{shown_path(text)}: not a regular file (a directory, device or pipe)")
    return Path(os.path.abspath(text))


def ffmpeg_url(path: str | os.PathLike) -> str:
    """``file:/absolute/path`` of a checked local file: the only form in which inputs reach ffmpeg."""
    return "file:" + str(check_local_media_path(path))


@functools.lru_cache(maxsize=1)
def demuxer_whitelist() -> str | None:
    """Every demuxer of this ffmpeg except capture devices and :data:`_REFUSED_DEMUXERS` (comma-separated).

    None when ``ffmpeg -demuxers`` cannot be parsed; inputs then keep only the protocol whitelist.
    """
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-demuxers"], capture_output=True, text=True, check=False)
    names = []
    for line in proc.stdout.splitlines():
        entry = re.match(r"^ ([D ])([E ])([d ]?) +(\S+)", line)
        if entry and entry.group(1) == "D" and entry.group(3) != "d":
            if not set(entry.group(4).split(",")) & _REFUSED_DEMUXERS:
                names.append(entry.group(4))
    return ",".join(names) or None


def _input_options() -> dict[str, str]:
    options = {"protocol_whitelist": "file"}
    if (formats := demuxer_whitelist()) is not None:
        options["format_whitelist"] = formats
    return options


def _input(path: str | os.PathLike):
    """ffmpeg-python input node of a checked local file, with the protocol and demuxer whitelists."""
    return ffmpeg.input(ffmpeg_url(path), **_input_options())


def _is_script(path: Path) -> bool:
    """Whether a file starts like a playlist or script that refers to other files (for the error message)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(256).lstrip().startswith(_SCRIPT_MAGIC)
    except OSError:
        return False


def _cli(node, loglevel: str = "error") -> list[str]:
    return node.global_args("-hide_banner", "-nostdin", "-loglevel", loglevel).get_args()


def _run(args: list[str], what: str, path: Path | str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as exc:
        raise MediaError(f"{path}: cannot run ffmpeg for {what}: {exc}") from exc


def _last_error_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("Input #", "Stream", "Metadata", "Duration")):
            return line[-90:]
    return "ffmpeg failed without a message"


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


# ------------------------------------------------------------------------------ frame selection
def avsbench_frame_indices(num_seconds: int, fps: float) -> list[int]:
    """Frame index AVSBench keeps for each second l: ``int(l*fps + 15/16*fps)``, fps rounded.

    Clamping to the last frame happens at extraction time, when the real frame count is known.
    """
    rfps = max(1, int(round(fps)))
    return [int(sec * rfps + 15 / 16 * rfps) for sec in range(num_seconds)]


@dataclass(frozen=True)
class FramePlan:
    """Which decoded frames (index n from 0, in decoding order) one extraction keeps.

    With fps rounded to an integer R, AVSBench's ``int(l*R + 15/16*R)`` is ``l*R + (15*R)//16``
    (``l*R`` is an integer and ``15/16*R`` is exact in binary), so the kept frames are those with
    ``n mod R == offset`` and ``n < T*R``: a ``select`` expression of constant length, whatever T.
    When the header says the clip may end before the last wanted frame, every frame from
    ``tail_start`` on is kept too, so that missing seconds can take the true last frame (the clamp).
    """

    num_seconds: int
    rfps: int
    tail_start: int | None  # None: the clip is long enough; ffmpeg stops after T frames
    estimated: int | None  # frames the header promises (duration * R); None when unknown

    @classmethod
    def for_clip(cls, num_seconds: int, fps: float, duration: float | None) -> FramePlan:
        rfps = max(1, int(round(fps)))
        estimated = int(duration * rfps) if duration else None
        last_wanted = (num_seconds - 1) * rfps + (15 * rfps) // 16
        tail_start = None
        if estimated is None or last_wanted >= estimated - 1:
            tail_start = max(0, min(last_wanted, estimated if estimated is not None else last_wanted) - 2 * rfps)
        return cls(num_seconds, rfps, tail_start, estimated)

    @property
    def offset(self) -> int:
        return (15 * self.rfps) // 16

    def wanted(self, second: int) -> int:
        """Decoded-frame index AVSBench takes for ``second`` (before clamping)."""
        return second * self.rfps + self.offset

    def select_expression(self) -> str:
        expr = f"eq(mod(n,{self.rfps}),{self.offset})*lt(n,{self.num_seconds * self.rfps})"
        return expr if self.tail_start is None else f"{expr}+gte(n,{self.tail_start})"

    def output_index(self, position: int) -> int:
        """Decoded index of the ``position``-th frame ffmpeg outputs (outputs come in decoding order)."""
        if self.tail_start is None:
            return self.wanted(position)
        before_tail = min(self.num_seconds, max(0, -(-(self.tail_start - self.offset) // self.rfps)))
        return self.wanted(position) if position < before_tail else self.tail_start + position - before_tail


# ------------------------------------------------------------------------------ streaming decode
class _Pipe:
    """One running ffmpeg whose stdout is read as a stream; a thread drains stderr (last lines kept)."""

    def __init__(self, args: list[str], path: str | Path, what: str) -> None:
        self.path, self.what = path, what
        try:
            self.proc = subprocess.Popen(
                [ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise MediaError(f"{path}: cannot run ffmpeg for {what}: {exc}") from exc
        self._stderr: deque[bytes] = deque(maxlen=40)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def read_into(self, buffer: np.ndarray) -> int:
        """Fill the contiguous array ``buffer`` from stdout; returns the bytes read (fewer at end of stream)."""
        view = memoryview(buffer.reshape(-1)).cast("B")
        got = 0
        while got < len(view):
            count = self.proc.stdout.readinto(view[got:])
            if not count:
                break
            got += count
        return got

    def check_exit(self) -> None:
        """At end of stream: wait for ffmpeg and raise :class:`MediaError` if it failed."""
        code = self.proc.wait()
        self._drain.join()
        if code != 0:
            reason = _last_error_line(b"".join(self._stderr))
            raise MediaError(f"{shown_path(str(self.path))}: ffmpeg could not decode it ({self.what}: {reason})")

    def stop(self) -> None:
        """End ffmpeg now (it may still be writing what is no longer needed) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self._drain.join()
        self.proc.stderr.close()


class _FrameReader:
    """Gives the AVSBench frame of each second, in order, from a running ffmpeg that follows a :class:`FramePlan`."""

    def __init__(self, pipe: _Pipe, plan: FramePlan, size: tuple[int, int]) -> None:
        self.pipe, self.plan = pipe, plan
        self.frame_bytes = size[0] * size[1] * 3
        self.outputs = 0  # frames read so far
        self.last_index = -1  # decoded index of the last whole frame read
        self.last = np.zeros((*size, 3), np.uint8)  # that frame, for the clamp
        self._scratch = np.zeros_like(self.last)
        self.ended = False

    def _read(self, target: np.ndarray) -> bool:
        if self.pipe.read_into(target) < self.frame_bytes:
            self.ended = True
            self.pipe.check_exit()
            return False
        self.outputs += 1
        return True

    def fill(self, second: int, slot: np.ndarray) -> int:
        """Write the frame of ``second`` into ``slot`` [H,W,3]; returns the decoded index taken."""
        wanted = self.plan.wanted(second)
        while not self.ended and self.last_index < wanted:
            index = self.plan.output_index(self.outputs)
            if index == wanted:
                if self._read(slot):
                    self.last[...] = slot
                    self.last_index = index
            elif self._read(self._scratch):  # a tail frame: only kept as "the last frame so far"
                self.last, self._scratch = self._scratch, self.last
                self.last_index = index
        if self.last_index == wanted:
            return wanted
        return self._clamp(wanted, slot)

    def _clamp(self, wanted: int, slot: np.ndarray) -> int:
        path, plan = shown_path(str(self.pipe.path)), self.plan
        if self.outputs == 0:
            raise MediaError(f"{path}: no decodable video frames")
        if plan.estimated is not None and wanted < plan.estimated - plan.rfps:
            # The header promises frames that do not decode: a cut or damaged file, not a short clip.
            raise MediaError(
                f"{path}: truncated or corrupt: frames stop at index {self.last_index} but the "
                f"header says about {plan.estimated} frames"
            )
        slot[...] = self.last
        return self.last_index


class _AudioReader:
    """16 kHz mono int16 from a running ffmpeg (None: no audio stream, silence)."""

    def __init__(self, pipe: _Pipe | None) -> None:
        self.pipe = pipe
        self.ended = pipe is None

    def fill(self, out: np.ndarray) -> int:
        """Fill int16 ``out`` (already zeros); returns the samples of real audio written."""
        if self.ended:
            return 0
        got = self.pipe.read_into(out) // 2
        if got < out.size:
            self.ended = True
            self.pipe.check_exit()
        return got


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
    stream = (
        _input(path)
        .video.filter("setpts", "N")
        .filter("select", plan.select_expression())
        .filter("scale", width, height, flags=resize_filter)
    )
    stop_after = {} if plan.tail_start is not None else {"frames:v": plan.num_seconds}  # stop decoding when done
    return _cli(
        ffmpeg.output(stream, "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", **stop_after)
    )


def _audio_args(path: str | Path, num_seconds: int) -> list[str]:
    # First audio stream, downmixed to mono and resampled to 16 kHz, at most T seconds.
    return _cli(
        ffmpeg.output(
            _input(path)["a:0"], "pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=AUDIO_RATE, t=num_seconds
        )
    )


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


# ------------------------------------------------------------------------------ encoding
def _frame_chunks(frames: np.ndarray | Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(first chunk [n,H,W,3] uint8, iterator over all chunks) of an array or an iterable of arrays."""
    chunks = iter([frames]) if isinstance(frames, np.ndarray) else iter(frames)
    first = next(chunks, None)
    if first is None or np.asarray(first).ndim != 4:
        raise ValueError("frames must be uint8 [N,H,W,3] or an iterable of such chunks")
    rest = (np.ascontiguousarray(chunk, dtype=np.uint8) for chunk in chunks)
    first = np.ascontiguousarray(first, dtype=np.uint8)
    return first, (chunk for part in ([first], rest) for chunk in part)


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
    if container == "mp4":
        out_kwargs.update(movflags="+faststart")
    if pts_expr:
        out_kwargs.update(fps_mode="passthrough", enc_time_base="1/1000")
    if audio_fd is not None:
        streams.append(ffmpeg.input(f"pipe:{audio_fd}", format="s16le", ar=audio_rate, ac=audio_channels).audio)
        out_kwargs.update(acodec="aac", audio_bitrate="128k")
    return _cli(
        ffmpeg.output(*streams, "file:" + os.path.abspath(out), format=container, **out_kwargs).global_args("-y")
    )


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
    audio: np.ndarray | None = None,
    audio_rate: int = AUDIO_RATE,
    crf: int = 18,
    vcodec: str = "libx264",
    pts_expr: str | None = None,
    preset: str = "medium",
    pinned: bool = False,
) -> None:
    """Write frames uint8 [N,H,W,3] (+ mono/multichannel int16 audio [S] or [S,C]) as a video file.

    ``frames`` may also be an iterable of [n,H,W,3] chunks, so long videos are written without
    holding them. Default H.264 (yuv420p, so H and W must be even) + AAC in mp4; ``vcodec="ffv1"``
    (any size, lossless, use .mkv) and ``pts_expr`` (an ffmpeg ``setpts`` expression, giving
    variable frame rate) exist to make awkward test media; ``preset``: x264's speed/size trade-off
    (benchmarks make long videos with "ultrafast"). Frames and audio reach ffmpeg through
    pipes; the file is written atomically (pipeline.atomic). Single-threaded x264 and bitexact
    muxer/encoder flags so the same input always gives the same bytes; ``pinned`` encodes with
    :func:`pinned_ffmpeg_exe` so they are the same on every machine.
    """
    path = Path(path)
    first, chunks = _frame_chunks(frames)
    _, height, width, _ = first.shape
    pcm = None if audio is None else np.ascontiguousarray(audio, dtype=np.int16)
    channels = 1 if pcm is None or pcm.ndim == 1 else pcm.shape[1]
    container = {".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm"}.get(path.suffix.lower(), "mp4")
    with atomic_path(path) as tmp:
        read_fd, write_fd = os.pipe() if pcm is not None else (None, None)
        try:
            args = _encode_args(
                tmp, container, width, height, fps, read_fd, channels, audio_rate, crf, vcodec, pts_expr, preset
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
            feeders.append(threading.Thread(target=_feed, args=(os.fdopen(write_fd, "wb"), [pcm]), daemon=True))
        for feeder in feeders:
            feeder.start()
        stderr = proc.stderr.read()
        for feeder in feeders:
            feeder.join()
        if proc.wait() != 0:
            raise MediaError(f"{shown_path(str(path))}: ffmpeg could not encode it ({_last_error_line(stderr)})")


def seconds_in(info: MediaInfo) -> int:
    """Whole seconds of a clip (at least 1): the T used when a source does not fix it."""
    return max(1, int(math.floor(info.duration or 0.0)))
