"""Per-file results kept across manifest runs, keyed on each file's stat: source sha256s and ffmpeg probes.

At AVSBench size a manifest run touches ~5,000 wavs and ~30,000 frame and label images; with both
caches an unchanged file costs one ``lstat`` (no read, no ffmpeg process): its key, the resolved path, is
its folder's resolved path (worked out once per folder) plus its name unless the file itself is a link.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import Any

from pipeline import media
from pipeline.atomic import atomic_path
from pipeline.hashing import file_sha256, sha256_of_file
from pipeline.manifest.paths import ABSENT_ERRNOS, is_file_by
from pipeline.media import probing

_NOT_NAMES = ("", os.curdir, os.pardir)  # last components that are no file's own name (resolved by realpath)


class NotCached(LookupError):
    """Raised, in :meth:`StatKeyedCache.lookups_only`, for a file whose value would have to be computed."""


class StatKeyedCache:
    """Values computed from files, reused only while the file's (inode, size, mtime_ns, ctime_ns) all match,
    as DVC does: an edit that keeps size and mtime (``touch -r``, a restored timestamp) still changes the ctime.

    File: ``{"format": F, **header, "entries": {absolute path: [inode, size, mtime_ns, ctime_ns, value]}}``.
    It is only a cache, so a malformed one is ignored with a warning naming it (every value is computed
    again and the file is rewritten, atomically); one whose ``header`` differs (made by another tool
    version) is dropped quietly. Subclasses set ``FORMAT``, ``WHAT`` and :meth:`valid_value`."""

    FORMAT = 0
    WHAT = "cache"

    def __init__(self, path: Path | None, lstat: Callable[[str], os.stat_result] = os.lstat) -> None:
        self.path = path
        # ``lstat``: how a file's own stat is taken (a manifest run shares one stat per file between its
        # listing and its caches: :class:`pipeline.manifest.paths.StatOnce`)
        self._lstat = lstat
        self.entries: dict[str, list] = {}
        self._changed = True  # whether the file on disk differs from ``entries`` (save writes it only then)
        self._real_folders: dict[str, str] = {}  # folder as given -> its resolved path (see :meth:`_stat_and_key`)
        self._may_compute = True  # False within lookups_only()
        if path is not None and path.is_file():
            self.entries = self._read(path)

    def header(self) -> dict[str, Any]:
        """Keys stored beside the entries that must match for the entries to be reused."""
        return {}

    def valid_value(self, value: Any) -> bool:
        raise NotImplementedError

    def _read(self, path: Path) -> dict[str, list]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: unreadable {self.WHAT} ignored ({exc})", stacklevel=4)
            return {}
        if self._earlier_format(data):
            return {}
        entries = data.get("entries") if isinstance(data, dict) and data.get("format") == self.FORMAT else None
        if not isinstance(entries, dict):
            warnings.warn(
                f"{path}: not a {self.WHAT} of this version (ignored; values are computed again)", stacklevel=4
            )
            return {}
        if any(data.get(key) != value for key, value in self.header().items()):
            return {}
        kept = {k: v for k, v in entries.items() if isinstance(v, list) and len(v) == 5 and self.valid_value(v[4])}
        self._changed = len(kept) != len(entries) or len(data) != 2 + len(self.header())
        return kept

    def _earlier_format(self, data: Any) -> bool:
        """Whether ``data`` is a cache an earlier version wrote (recomputed quietly, not warned about)."""
        return False

    def _stat_and_key(self, file: str) -> tuple[os.stat_result, str]:
        """The stat of ``file`` (links followed) and its key, its resolved absolute path (``Path.resolve``).
        A file that is not itself a link resolves to its folder's resolved path plus its name, so one
        ``lstat`` does for both (``realpath`` takes one per component of the path)."""
        own = self._lstat(file)
        folder, slash, name = file.rpartition("/")  # os.path.split's answer for the paths built here, faster
        if S_ISLNK(own.st_mode) or name in _NOT_NAMES:
            return os.stat(file), os.path.realpath(file)
        if slash and not folder:
            folder = "/"
        real_folder = self._real_folders.get(folder) or self._real_folder(folder)
        return own, f"{real_folder}/{name}" if real_folder != "/" else f"/{name}"

    def _real_folder(self, folder: str) -> str:
        """``os.path.realpath(folder)``, remembered: a folder that is not a link resolves to its parent's
        resolved path plus its name, so each folder of a dataset costs one ``lstat`` per run."""
        real = self._real_folders.get(folder)
        if real is None:
            parent, name = os.path.split(folder)
            try:
                plain = name not in ("", os.curdir, os.pardir) and not S_ISLNK(os.lstat(folder).st_mode)
            except OSError:
                plain = False
            real = os.path.join(self._real_folder(parent), name) if plain else os.path.realpath(folder or os.curdir)
            self._real_folders[folder] = real
        return real

    def get(self, file: str | Path, compute: Callable[[Path], Any]) -> Any:
        """The cached value of ``file`` while its stat is unchanged, else ``compute(file)`` (then cached).
        The stat is taken first: a file changing while it is read gets a new stat, so it is read again next run."""
        return self._value(file, *self._stat_and_key(os.fspath(file)), compute)

    def get_if_file(self, file: str, compute: Callable[[Path], Any]) -> Any | None:
        """:meth:`get` of a regular file (or a link to one); None where ``Path(file).is_file()`` is False
        (missing, a folder, a broken link), errors as pathlib raises them: one stat does for both."""
        try:
            stat, key = self._stat_and_key(file)
        except OSError as exc:
            if exc.errno not in ABSENT_ERRNOS:
                raise
            return None
        except ValueError:  # a NUL byte in the name, as pathlib
            return None
        return self._value(file, stat, key, compute) if S_ISREG(stat.st_mode) else None

    def _value(self, file: str | Path, stat: os.stat_result, key: str, compute: Callable[[Path], Any]) -> Any:
        entry = self.entries.get(key)
        if (
            entry is not None  # compared field by field: no list is built for the ~50,000 unchanged files
            and entry[0] == stat.st_ino
            and entry[1] == stat.st_size
            and entry[2] == stat.st_mtime_ns
            and entry[3] == stat.st_ctime_ns
        ):
            return entry[4]
        if not self._may_compute:
            raise NotCached(file)
        entry = [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, compute(Path(file))]
        self.entries[key] = entry
        self._changed = True
        return entry[4]

    def is_file(self, file: str) -> bool:
        """``Path(file).is_file()``, from this cache's ``lstat`` (a link: its target's stat)."""
        return is_file_by(self._lstat, file)

    @contextlib.contextmanager
    def lookups_only(self) -> Iterator[None]:
        """Within: :meth:`get` raises :class:`NotCached` instead of computing a value (files are then
        neither read nor probed). Not for use while other threads call :meth:`get`."""
        self._may_compute = False
        try:
            yield
        finally:
            self._may_compute = True

    def save(self) -> None:
        """Write the cache, unless nothing changed since it was read (a warm run leaves the file as it is)."""
        if self.path is None or not self._changed:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"format": self.FORMAT, **self.header(), "entries": self.entries}))
        self._changed = False


class HashCache(StatKeyedCache):
    """sha256 of source files (``data/cache/sha256.json``); a cache of the earlier format (keys
    ``path|size|mtime``) is dropped quietly."""

    FORMAT = 2
    WHAT = "hash cache"

    def valid_value(self, value: Any) -> bool:
        return isinstance(value, str)

    def _earlier_format(self, data: Any) -> bool:
        return isinstance(data, dict) and "format" not in data and all(isinstance(v, str) for v in data.values())

    def sha256(self, file: str | Path) -> str:
        return self.get(file, sha256_of_file)

    def sha256_if_file(self, file: str) -> str | None:
        """sha256 of a regular file; None where ``Path(file).is_file()`` is False."""
        return self.get_if_file(file, sha256_of_file)


_INFO_FIELDS = ("duration", "fps", "width", "height", "audio_rate", "audio_channels")


def _probe_value(file: Path) -> dict[str, Any]:
    info = media.probe(file)
    return {name: getattr(info, name) for name in _INFO_FIELDS}


def _ffmpeg_identity() -> list:
    """The ffmpeg binary's path and stat: another ffmpeg may report other durations, so its probes are dropped."""
    try:
        exe = media.ffmpeg_exe()
        exe = shutil.which(exe) or exe  # $AVS_FFMPEG may be a bare name found on PATH
        stat = os.stat(exe)
    except (media.MediaError, OSError):  # no ffmpeg: every probe fails and says so; nothing is reused
        return []
    return [exe, stat.st_size, stat.st_mtime_ns]


class ProbeCache(StatKeyedCache):
    """What ``ffmpeg -i`` reported for media files (``data/cache/probe.json``), so an unchanged file is
    not probed again. Only readable files are cached: a file ffmpeg refused is probed again (and
    reported again) on every run. Entries made by another ffmpeg binary, or by another version of the
    banner parser (``pipeline/media/probing.py``, a dependency of the manifest stage: DVC reruns the
    stage when it changes, and the rerun must probe again), are dropped."""

    FORMAT = 1
    WHAT = "probe cache"

    def header(self) -> dict[str, Any]:
        return {"ffmpeg": _ffmpeg_identity(), "parser": file_sha256(probing.__file__)}

    def valid_value(self, value: Any) -> bool:
        return isinstance(value, dict) and set(value) == set(_INFO_FIELDS)

    def probe(self, file: str | Path) -> media.MediaInfo:
        """:func:`pipeline.media.probe` of ``file``, from the cache while the file is unchanged. The path
        is checked as a probe checks it (local regular file) even when the result comes from the cache."""
        text = media.refuse_remote(file)
        value = self.get_if_file(text, _probe_value)  # all check_local_media_path asks beyond refuse_remote
        if value is None:
            media.check_local_media_path(file)  # not a regular file: raises, saying why
            value = self.get(text, _probe_value)
        return media.MediaInfo(**value)
