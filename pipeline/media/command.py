"""Running ffmpeg safely: which binary, the one-line errors, and local files only.

ffmpeg is taken from ``$AVS_FFMPEG``, then the static binary shipped in the ``imageio-ffmpeg`` wheel,
then PATH, so nothing needs root. Commands are built with ffmpeg-python (argument lists, never a
shell string). Every path handed to ffmpeg first goes through :func:`check_local_media_path` and is
then passed as ``file:/absolute/path``; inputs are opened with ``-protocol_whitelist file`` and a
demuxer whitelist without the playlist/script demuxers (see the package docstring).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

AUDIO_RATE = 16_000  # Hz, the rate every AVS audio encoder expects


# ffmpeg with no CPU-specific code (libavcodec, libswscale, libswresample, libavutil): the same
# output on every x86-64 CPU. SIMD paths are not all bit-exact with the C code: the demo mp4s
# (swscale rgb24 -> yuv420p) and decoded AAC audio (float decoder + resampler) changed with them.
PORTABLE_GLOBAL_ARGS = ("-cpuflags", "0")


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
    import ffmpeg  # ffmpeg-python, which builds argument lists for us: here, so that importing media costs ~30 ms less

    return ffmpeg.input(ffmpeg_url(path), **_input_options())


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
