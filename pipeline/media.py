"""Every ffmpeg call of the project lives here (probe, frame + audio extraction, encoding).

ffmpeg is taken from PATH when present, else the static binary shipped in the ``imageio-ffmpeg``
wheel, so nothing needs root. ffprobe is never required: :func:`probe` parses ``ffmpeg -i``.
Commands are built with ffmpeg-python (argument lists, never a shell string).
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg  # ffmpeg-python: builds argument lists for us
import numpy as np

AUDIO_RATE = 16_000  # Hz, the rate every AVS audio encoder expects


class MediaError(RuntimeError):
    """A media file could not be read; the message names the file and the reason."""


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$AVS_FFMPEG``, then PATH, then the imageio-ffmpeg wheel."""
    explicit = os.environ.get("AVS_FFMPEG")
    if explicit:
        return explicit
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise MediaError("ffmpeg not found on PATH and imageio-ffmpeg is not installed") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


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
_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6,
            "5.1(side)": 6, "6.1": 7, "7.1": 8, "7.1(wide)": 8}


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


def _run(args: list[str], what: str, path: Path | str, input_bytes: bytes | None = None,
         exe: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([exe or ffmpeg_exe(), *args], input=input_bytes, capture_output=True, check=False)
    except OSError as exc:
        raise MediaError(f"{path}: cannot run ffmpeg for {what}: {exc}") from exc


def _last_error_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("Input #", "Stream", "Metadata", "Duration")):
            return line[-300:]
    return "ffmpeg failed without a message"


def probe(path: str | Path) -> MediaInfo:
    """Read duration, frame rate, size and audio layout of ``path`` with ``ffmpeg -i``.

    Raises :class:`MediaError` naming the file when it is missing, empty or not a media file.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    proc = _run(["-hide_banner", "-nostdin", "-i", str(path)], "probe", path)
    text = proc.stderr.decode("utf-8", "replace")
    info = parse_probe(text)
    if not info.has_video and not info.has_audio:
        raise MediaError(f"{path}: not a readable audio/video file ({_last_error_line(proc.stderr)})")
    return info


def avsbench_frame_indices(num_seconds: int, fps: float) -> list[int]:
    """Frame index AVSBench keeps for each second l: ``int(l*fps + 15/16*fps)``, fps rounded.

    Clamping to the last frame happens at extraction time, when the real frame count is known.
    """
    rfps = max(1, int(round(fps)))
    return [int(sec * rfps + 15 / 16 * rfps) for sec in range(num_seconds)]


@dataclass
class Extracted:
    frames: np.ndarray  # uint8 [T,H,W,3]
    frame_indices: list[int]  # decoded-frame index taken for each second (after clamping)
    audio: np.ndarray  # int16 [T*16000]
    audio_source: str  # "stream" or "silence (no audio stream)"
    decoded_frames: int  # highest decoded frame index seen + 1 (a lower bound when not decoded to the end)


_SHOWINFO_PTS = re.compile(r"\[Parsed_showinfo.*?\] n:\s*\d+ pts:\s*(-?\d+)")


def extract_clip(path: str | Path, num_seconds: int, size: tuple[int, int] = (224, 224),
                 info: MediaInfo | None = None, resize_filter: str = "bilinear",
                 missing_audio: str = "silence") -> Extracted:
    """Decode ``path`` once and return the T frames AVSBench keeps plus T seconds of 16 kHz mono audio.

    One ffmpeg run: ``setpts=N`` stamps each decoded frame with its index, ``select`` keeps the
    wanted indices (plus the tail when the clip may be shorter than asked, for clamping),
    ``showinfo`` reports which indices came out, and only kept frames are scaled (to ``size`` =
    (H, W), aspect not kept, like AVSBench). Audio is downmixed to mono, resampled to 16 kHz,
    padded with silence or trimmed to exactly ``num_seconds``.

    Padding rules: a second past the last frame takes the last frame (AVSBench's clamp); audio
    shorter than T seconds is padded with zeros; with no audio stream, ``missing_audio="silence"``
    gives all-zero audio (``audio_source`` records it) and ``"fail"`` raises.
    """
    path = Path(path)
    info = info or probe(path)
    if not info.has_video:
        raise MediaError(f"{path}: no video stream")
    if not info.fps or info.fps <= 0:
        raise MediaError(f"{path}: frame rate unknown")
    if not info.has_audio and missing_audio == "fail":
        raise MediaError(f"{path}: no audio stream")
    height, width = size
    rfps = max(1, int(round(info.fps)))
    wanted = avsbench_frame_indices(num_seconds, info.fps)
    terms = [f"eq(n,{i})" for i in wanted]
    estimated = int(info.duration * rfps) if info.duration else None
    # Only when the header says the clip may end before the last wanted index do we also keep the
    # tail (to clamp to the true last frame); otherwise ffmpeg stops after the last wanted frame.
    needs_tail = estimated is None or wanted[-1] >= estimated - 1
    if needs_tail:
        tail_start = max(0, min(wanted[-1], estimated if estimated is not None else wanted[-1]) - 2 * rfps)
        terms.append(f"gte(n,{tail_start})")
    select_expr = "+".join(terms)
    with tempfile.TemporaryDirectory(prefix="avs-extract-") as tmp:
        raw_video = Path(tmp) / "frames.rgb"
        raw_audio = Path(tmp) / "audio.s16"
        source = ffmpeg.input(str(path))
        video = (source.video.filter("setpts", "N").filter("select", select_expr)
                 .filter("scale", width, height, flags=resize_filter).filter("showinfo"))
        video_kwargs = {} if needs_tail else {"frames:v": len(wanted)}  # stop decoding once all are out
        outputs = [ffmpeg.output(video, str(raw_video), format="rawvideo", pix_fmt="rgb24",
                                 fps_mode="passthrough", **video_kwargs)]
        if info.has_audio:
            audio = source.audio.filter("apad", whole_len=num_seconds * AUDIO_RATE)
            outputs.append(ffmpeg.output(audio, str(raw_audio), format="s16le", acodec="pcm_s16le",
                                         ac=1, ar=AUDIO_RATE, t=num_seconds))
        args = ffmpeg.merge_outputs(*outputs).global_args("-hide_banner", "-nostdin", "-loglevel", "info").get_args()
        proc = _run(args, "extraction", path)
        if proc.returncode != 0:
            raise MediaError(f"{path}: ffmpeg could not decode it ({_last_error_line(proc.stderr)})")
        indices = [int(p) for p in _SHOWINFO_PTS.findall(proc.stderr.decode("utf-8", "replace"))]
        frame_bytes = height * width * 3
        data = raw_video.read_bytes() if raw_video.exists() else b""
        count = len(data) // frame_bytes
        if count == 0:
            raise MediaError(f"{path}: no decodable video frames")
        if len(indices) != count:
            raise MediaError(f"{path}: ffmpeg reported {len(indices)} frame indices for {count} frames")
        decoded = np.frombuffer(data[: count * frame_bytes], np.uint8).reshape(count, height, width, 3)
        by_index = {idx: k for k, idx in enumerate(indices)}
        last = max(indices)
        if estimated is not None and any(last < i < estimated - rfps for i in wanted):
            # The header promises frames that do not decode: a cut or damaged file, not a short clip.
            raise MediaError(f"{path}: truncated or corrupt: frames stop at index {last} but the header "
                             f"says about {estimated} frames ({info.duration:.2f} s)")
        taken = [i if i in by_index else last for i in wanted]
        skipped = [i for i in wanted if i <= last and i not in by_index]
        if skipped:  # inside the decoded range yet absent: the decoder dropped frames
            raise MediaError(f"{path}: frames {skipped} were not decoded")
        frames = np.stack([decoded[by_index[i]] for i in taken])
        if info.has_audio:
            pcm = np.frombuffer(raw_audio.read_bytes(), np.int16) if raw_audio.exists() else np.zeros(0, np.int16)
            audio_source = "stream"
        else:
            pcm = np.zeros(0, np.int16)
            audio_source = "silence (no audio stream)"
    total = num_seconds * AUDIO_RATE
    audio = np.zeros(total, np.int16)
    audio[: min(total, pcm.size)] = pcm[:total]
    return Extracted(frames=frames, frame_indices=taken, audio=audio, audio_source=audio_source,
                     decoded_frames=last + 1)


def read_audio(path: str | Path, num_seconds: int) -> np.ndarray:
    """Decode any audio (or video) file to int16 mono 16 kHz of exactly ``num_seconds`` (pad/trim)."""
    path = Path(path)
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{path}: no audio stream")
    args = (ffmpeg.input(str(path)).audio.output("pipe:", format="s16le", acodec="pcm_s16le", ac=1,
                                                  ar=AUDIO_RATE, t=num_seconds)
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error").get_args())
    proc = _run(args, "audio decoding", path)
    if proc.returncode != 0:
        raise MediaError(f"{path}: ffmpeg could not decode the audio ({_last_error_line(proc.stderr)})")
    pcm = np.frombuffer(proc.stdout, np.int16)
    total = num_seconds * AUDIO_RATE
    audio = np.zeros(total, np.int16)
    audio[: min(total, pcm.size)] = pcm[:total]
    return audio


def decode_all_frames(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode every frame of ``path`` as uint8 [N,H,W,3] (native size unless ``size`` = (H, W)).

    Used by benchmarks (the AVSBench baseline decodes everything) and by ``avs predict``.
    """
    path = Path(path)
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{path}: no video stream")
    height, width = size if size else (info.height, info.width)
    stream = ffmpeg.input(str(path)).video
    if size:
        stream = stream.filter("scale", width, height)
    args = (stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error").get_args())
    proc = _run(args, "frame decoding", path)
    if proc.returncode != 0:
        raise MediaError(f"{path}: ffmpeg could not decode it ({_last_error_line(proc.stderr)})")
    frame_bytes = height * width * 3
    count = len(proc.stdout) // frame_bytes
    return np.frombuffer(proc.stdout[: count * frame_bytes], np.uint8).reshape(count, height, width, 3)


def encode_video(path: str | Path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                 audio_rate: int = AUDIO_RATE, crf: int = 18, vcodec: str = "libx264",
                 pts_expr: str | None = None, pinned: bool = False) -> None:
    """Write frames uint8 [N,H,W,3] (+ mono/multichannel int16 audio [S] or [S,C]) as a video file.

    Default H.264 (yuv420p, so H and W must be even) + AAC in mp4; ``vcodec="ffv1"`` (any size,
    lossless, use .mkv) and ``pts_expr`` (an ffmpeg ``setpts`` expression, giving variable frame
    rate) exist to make awkward test media. Written to a temporary name in the same folder, then
    renamed. Single-threaded x264 and bitexact muxer/encoder flags so the same input always gives the
    same bytes; ``pinned`` encodes with :func:`pinned_ffmpeg_exe` so they are the same on every machine.
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    n, height, width, _ = frames.shape
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avs-encode-") as workdir:
        raw_video = Path(workdir) / "frames.rgb"
        raw_video.write_bytes(frames.tobytes())
        video_in = ffmpeg.input(str(raw_video), format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                                framerate=fps)
        video_stream = video_in.video
        if pts_expr:
            # A fine time base first, so sub-frame timestamps are not rounded into duplicates (dropped frames).
            video_stream = video_stream.filter("settb", "1/1000").filter("setpts", pts_expr)
        streams = [video_stream]
        container = {".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm"}.get(path.suffix.lower(), "mp4")
        out_kwargs: dict = dict(vcodec=vcodec, threads=1, map_metadata=-1, fflags="+bitexact", flags="+bitexact")
        if vcodec == "libx264":
            out_kwargs.update(pix_fmt="yuv420p", crf=crf, preset="medium")
        if container == "mp4":
            out_kwargs.update(movflags="+faststart")
        if pts_expr:
            out_kwargs.update(fps_mode="passthrough", enc_time_base="1/1000")
        if audio is not None:
            pcm = np.ascontiguousarray(audio, dtype=np.int16)
            channels = 1 if pcm.ndim == 1 else pcm.shape[1]
            raw_audio = Path(workdir) / "audio.s16"
            raw_audio.write_bytes(pcm.tobytes())
            audio_in = ffmpeg.input(str(raw_audio), format="s16le", ar=audio_rate, ac=channels)
            streams.append(audio_in.audio)
            out_kwargs.update(acodec="aac", audio_bitrate="128k")
        args = (ffmpeg.output(*streams, str(tmp), format=container, **out_kwargs)
                .global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-y").get_args())
        proc = _run(args, "encoding", path, exe=pinned_ffmpeg_exe() if pinned else None)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{path}: ffmpeg could not encode it ({_last_error_line(proc.stderr)})")
    os.replace(tmp, path)


def encode_wav(path: str | Path, audio: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """Write int16 audio [S] or [S,C] as a PCM wav file (temporary name, then rename)."""
    path = Path(path)
    pcm = np.ascontiguousarray(audio, dtype=np.int16)
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    args = (ffmpeg.input("pipe:", format="s16le", ar=rate, ac=channels)
            .output(str(tmp), acodec="pcm_s16le", format="wav", fflags="+bitexact")
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-y").get_args())
    proc = _run(args, "wav encoding", path, input_bytes=pcm.tobytes())
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{path}: ffmpeg could not write it ({_last_error_line(proc.stderr)})")
    os.replace(tmp, path)


def seconds_in(info: MediaInfo) -> int:
    """Whole seconds of a clip (at least 1): the T used when a source does not fix it."""
    return max(1, int(math.floor(info.duration or 0.0)))
