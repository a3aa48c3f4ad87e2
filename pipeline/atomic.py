"""Write-to-temporary-then-rename, the one way this project writes a file that others read.

A crash (or kill) at any moment leaves either the previous file or none under the real name,
never a partial one. Temporaries live beside their target (so the rename is atomic) under a
random name created exclusively, ``.{name}.tmp-{16 hex}{suffix}``. A writer takes an exclusive
``flock`` on ``{temporary}.lock`` *before* it creates the temporary and removes the temporary before
releasing the lock, so a temporary whose lock nobody holds is abandoned (the kernel releases the lock
when its writer dies, whatever its PID namespace) and is removed by the next writer of that file. No
process id is trusted, so writers in other containers, or on other hosts sharing the folder, never
delete each other's files; with two concurrent writers of one file, each publishes a complete file
and the last rename wins.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ORPHAN_LOCK_AFTER_S = 60.0  # a lock file without temporary younger than this may be a writer just starting
TMP_MARK = ".tmp-"


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


def _is_abandoned(tmp: Path) -> bool:
    """True when no live writer holds the lock of temporary ``tmp``."""
    try:
        fd = os.open(_lock_of(tmp), os.O_RDONLY)
    except FileNotFoundError:
        return True  # lock gone: its writer ended without cleaning up
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the abandoned temporaries of ``path`` (see the module docstring); returns them."""
    path = Path(path)
    removed = []
    for found in path.parent.glob(f".{path.name}{TMP_MARK}*"):
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
    remove_stale_temporaries(path)
    tmp = _temporary_name(path, suffix)
    with _held_lock(_lock_of(tmp)):
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        try:
            yield tmp
            os.replace(tmp, path)
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
