"""The extract shard's ``ffmpeg_sha256``: kept between runs in a stat-keyed cache, hashed again when the
binary changes (edited in place, even to the same size and mtime, or replaced)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from pipeline import media
from pipeline.extraction import _ffmpeg_identity


@pytest.fixture()
def use_ffmpeg(monkeypatch):
    """Point $AVS_FFMPEG at a file (ffmpeg_exe() reads it once per process: its memo is cleared around)."""

    def point(path: Path | None) -> None:
        if path is None:
            monkeypatch.delenv("AVS_FFMPEG", raising=False)
        else:
            monkeypatch.setenv("AVS_FFMPEG", str(path))
        media.ffmpeg_exe.cache_clear()

    yield point
    monkeypatch.undo()
    media.ffmpeg_exe.cache_clear()


def _write(path: Path, content: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def test_the_digest_is_kept_between_runs_and_follows_a_changed_binary(tmp_path, use_ffmpeg):
    binary = tmp_path / "bin" / "ffmpeg"
    first = _write(binary, b"ffmpeg build one\n" * 4096)
    use_ffmpeg(binary)
    cache = tmp_path / "cache" / "ffmpeg.sha256.json"
    assert _ffmpeg_identity(cache) == first
    written = cache.stat()
    assert _ffmpeg_identity(cache) == first
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # not rewritten

    # The warm run answers from the cache: a planted digest comes back, so the binary was not read again.
    data = json.loads(cache.read_text())
    (entry,) = data["entries"].values()
    entry[4] = "0" * 64
    cache.write_text(json.dumps(data))
    assert _ffmpeg_identity(cache) == "0" * 64

    # Edited in place to the same size, its mtime put back: the ctime still moves (a coarse clock tick apart).
    time.sleep(0.05)
    before = binary.stat()
    second = _write(binary, b"ffmpeg build two\n" * 4096)
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert binary.stat().st_size == before.st_size and binary.stat().st_ino == before.st_ino
    assert _ffmpeg_identity(cache) == second

    replacement = tmp_path / "bin" / "ffmpeg.new"
    third = _write(replacement, b"ffmpeg build three, longer\n" * 4096)
    replacement.replace(binary)
    assert _ffmpeg_identity(cache) == third


def test_without_a_cache_or_a_binary(tmp_path, use_ffmpeg):
    binary = tmp_path / "ffmpeg"
    digest = _write(binary, b"a build")
    use_ffmpeg(binary)
    assert _ffmpeg_identity() == digest  # no cache: hashed
    use_ffmpeg(tmp_path / "missing")
    assert _ffmpeg_identity(tmp_path / "cache.json") == "unknown"
    assert not (tmp_path / "cache.json").exists()


def test_the_pinned_binary_gets_the_same_digest_cached_or_not(tmp_path, use_ffmpeg):
    use_ffmpeg(None)
    cache = tmp_path / "ffmpeg.sha256.json"
    uncached = _ffmpeg_identity()
    assert uncached != "unknown"
    assert _ffmpeg_identity(cache) == uncached == _ffmpeg_identity(cache)
