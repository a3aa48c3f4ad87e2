"""Write-to-temporary-then-rename: how this project writes every file that others read, except the
dvclive records (``metrics.json`` and the plot TSVs), which dvclive writes itself.

A crash (or kill) at any moment leaves either the previous file or none under the real name,
never a partial one. Temporaries live beside their target (so the rename is atomic) under a
random name created exclusively, ``.{name}.tmp-{16 hex}{suffix}``. A writer takes an exclusive
``flock`` on ``{temporary}.lock`` *before* it creates the temporary and removes the temporary before
releasing the lock, so a temporary whose lock nobody holds is abandoned (the kernel releases the lock
when its writer dies, whatever its PID namespace) and is removed by the next writer of that file, or
by the first writer a process starts in that folder, whatever file it writes. No process id is
trusted, so writers in other containers, or on other hosts sharing the folder, never delete each
other's files; with two concurrent writers of one file, each publishes a complete file and the last
rename wins.

A write that runs out of space (ENOSPC, EFBIG past a file-size limit, a quota) ends in one
:class:`DiskFullError` naming the file and the free space, with the temporary removed, whatever
library did the writing (HDF5, torch's zip writer, plain files). Writers of large files check the
free space against the expected size first (:func:`ensure_free_space`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from stat import S_ISREG
from typing import Any

ORPHAN_LOCK_AFTER_S = 60.0  # a lock file without temporary younger than this may be a writer just starting
TMP_MARK = ".tmp-"
HEADROOM_BYTES = 1 << 20  # kept free beyond a write's expected size (file metadata, other writers' small files)
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# How libraries that hide errno say it: HDF5 ("errno = 28"), C stdio / Python ("No space left on device").
_NO_SPACE_TEXT = ("No space left", "errno = 28", "errno = 27", "File too large", "Disk quota exceeded")


class DiskFullError(OSError):
    """A write ran out of space; the message names the file and the free space (one line)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.1f} TB"  # pragma: no cover - the loop returns


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free for this user in the file system of ``folder`` (None when it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def ensure_free_space(path: str | Path, need_bytes: int) -> None:
    """Raise :class:`DiskFullError` before writing ``need_bytes`` more to ``path`` when its file system
    has less than that (plus :data:`HEADROOM_BYTES`) free: refusing early leaves no half-written file
    in a library's hands (HDF5 crashed when its writes failed)."""
    free = free_bytes(Path(path).parent)
    if free is not None and free < need_bytes + HEADROOM_BYTES:
        raise DiskFullError(
            errno.ENOSPC,
            f"{path}: not enough free space: {_size(free)} free, the next write needs up to "
            f"{_size(need_bytes)} (+{_size(HEADROOM_BYTES)} kept free)",
        )


def _out_of_space_reason(exc: BaseException, folder: Path) -> str | None:
    """Why a failed write failed, when for lack of space (errno, a library's message, or a full disk now)."""
    if isinstance(exc, DiskFullError) or not isinstance(exc, Exception):
        return None
    text = str(exc)
    if (isinstance(exc, OSError) and exc.errno == errno.EFBIG) or "File too large" in text or "errno = 27" in text:
        return "the file size limit (ulimit -f) was reached"
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS or any(m in text for m in _NO_SPACE_TEXT):
        return "no space left on the device"
    free = free_bytes(folder)  # torch's zip writer only says "unexpected pos"
    return "no space left on the device" if free is not None and free < HEADROOM_BYTES else None


def _temporary_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{secrets.token_hex(8)}{suffix}")


def _lock_of(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + ".lock")


@contextlib.contextmanager
def _held_lock(lock: Path) -> Iterator[None]:
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)


def lock_is_free(lock_path: Path) -> bool | None:
    """Whether no live process holds the flock of ``lock_path`` (the kernel drops a dead process's
    lock); None when there is no such file."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _is_abandoned(tmp: Path) -> bool:
    """True when no live writer holds the lock of temporary ``tmp``."""
    free = lock_is_free(_lock_of(tmp))
    return True if free is None else free  # lock gone: its writer ended without cleaning up


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the abandoned temporaries of ``path`` (see the module docstring); returns them."""
    path = Path(path)
    return _remove_abandoned(path.parent.glob(f".{path.name}{TMP_MARK}*"))


_TEMPORARY_NAME = re.compile(r"^\..+" + re.escape(TMP_MARK) + r"[0-9a-f]{16}")
_swept_folders: set[tuple[int, str]] = set()  # (pid, folder): each process sweeps a folder once


def remove_stale_temporaries_in(folder: str | Path) -> list[Path]:
    """Delete the abandoned temporaries of every file in ``folder`` (writers killed by ``kill -9``
    leave theirs until a writer of the same file runs; this is the next writer of any file there)."""
    folder = Path(folder)
    try:
        candidates = [p for p in folder.iterdir() if _TEMPORARY_NAME.match(p.name)]
    except OSError:
        return []
    return _remove_abandoned(candidates)


def _sweep_once(folder: Path) -> None:
    key = (os.getpid(), os.path.abspath(folder))
    if key not in _swept_folders:
        _swept_folders.add(key)
        remove_stale_temporaries_in(folder)


def _remove_abandoned(candidates: Iterable[Path]) -> list[Path]:
    removed = []
    for found in candidates:
        if found.name.endswith(".lock"):
            _remove_orphan_lock(found)
        elif _is_abandoned(found):
            found.unlink(missing_ok=True)
            _lock_of(found).unlink(missing_ok=True)
            removed.append(found)
    return removed


def _remove_orphan_lock(lock: Path) -> None:
    """A lock file left by a writer killed between taking its lock and creating its temporary."""
    tmp = lock.with_name(lock.name.removesuffix(".lock"))
    try:
        old = time.time() - lock.stat().st_mtime > ORPHAN_LOCK_AFTER_S
    except FileNotFoundError:
        return
    if old and not tmp.exists() and _is_abandoned(tmp):
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (created empty, exclusively, under a random name); on success
    rename it to ``path``, on error delete it. ``suffix`` keeps an extension tools rely on (".png")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    remove_stale_temporaries(path)
    tmp = _temporary_name(path, suffix)
    with _held_lock(_lock_of(tmp)):
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException as exc:
            if (reason := _out_of_space_reason(exc, path.parent)) is not None:
                free = free_bytes(path.parent)
                shown = "unknown" if free is None else _size(free)
                raise DiskFullError(
                    errno.ENOSPC, f"{path}: {reason} ({shown} free); the temporary was removed"
                ) from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], fieldnames: list[str]) -> None:
    """Rows (dicts) as CSV with a header; keys outside ``fieldnames`` are ignored."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def holds_bytes(path: str | Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file (not a link) whose bytes are ``data``."""
    try:
        stat = os.lstat(path)
        return S_ISREG(stat.st_mode) and stat.st_size == len(data) and Path(path).read_bytes() == data
    except OSError:
        return False


def write_bytes_if_changed(path: str | Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless ``path`` already holds exactly those bytes
    (:func:`holds_bytes`): then the file, its inode and its times are left as they are, so that DVC and other
    readers see nothing change; abandoned temporaries beside it are removed as a write would. Returns whether
    it was written. The one way the manifest, the tree stamps and the code digests keep an unchanged output."""
    if holds_bytes(path, data):
        remove_stale_temporaries(path)
        return False
    write_bytes(path, data)
    return True
