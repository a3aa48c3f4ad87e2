"""Path work done once or more per file of a dataset, on strings: at AVSBench size a manifest run names
~70,000 files, and building a ``pathlib.Path`` costs more than the ``stat`` it is built for. Each function
answers exactly as its ``pathlib`` counterpart (the manifest's text must not change with it)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG

# The errors Path.is_file() answers False to (pathlib's _IGNORED_ERRNOS); any other error is raised.
ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})


def _mode(path: str) -> int:
    """``st_mode`` of ``path`` (links followed); 0 when pathlib would call it absent."""
    try:
        return os.stat(path).st_mode
    except OSError as exc:
        if exc.errno not in ABSENT_ERRNOS:
            raise
        return 0
    except ValueError:  # an embedded NUL byte, as pathlib
        return 0


def is_file(path: str) -> bool:
    """``Path(path).is_file()``: a regular file, or a link to one. A missing file, a file under a
    non-folder and a link loop are False; other errors (a folder that may not be searched) are raised."""
    return S_ISREG(_mode(path))


def is_file_by(lstat: Callable[[str], os.stat_result], path: str) -> bool:
    """:func:`is_file` answered from ``lstat`` (a remembered or a cached one); a link: its target's stat, taken
    now. Absent paths and names with a NUL byte are False, as pathlib answers."""
    try:
        own = lstat(path)
    except OSError as exc:
        if exc.errno not in ABSENT_ERRNOS:
            raise
        return False
    except ValueError:  # an embedded NUL byte, as pathlib
        return False
    return is_file(path) if S_ISLNK(own.st_mode) else S_ISREG(own.st_mode)


def is_plain_relative(text: str) -> bool:
    """Whether ``text`` is a relative path in pathlib's form, ``str(PurePosixPath(text)) == text``: components
    that are neither empty nor ``.``, joined by single slashes (string tests, no split)."""
    return not (
        text in ("", ".") or text.startswith(("/", "./")) or text.endswith(("/", "/.")) or "//" in text or "/./" in text
    )


def joined(folder: str, *names: str) -> str:
    """``str(Path(folder, *names))`` for a ``folder`` that is a ``str(Path)``: the joined text when the
    names join into a plain relative path (:func:`is_plain_relative`), else pathlib's answer."""
    relative = "/".join(names)
    if folder in ("", ".") or folder.endswith("/") or not is_plain_relative(relative):
        return str(Path(folder, *names))
    return f"{folder}/{relative}"


def relative_name(file: str, folder: str) -> str:
    """``Path(file).relative_to(folder).as_posix()``: the text after ``folder/`` when that is in pathlib's
    form already, else pathlib's answer (a ValueError when ``file`` is not under ``folder``)."""
    if folder not in ("", ".") and not folder.endswith("/") and file.startswith(folder + "/"):
        rest = file[len(folder) + 1 :]
        if is_plain_relative(rest):
            return rest
    return Path(file).relative_to(folder).as_posix()


class StatOnce:
    """The ``lstat`` of each file, taken once per manifest run: the listing asks whether a label image is a
    file, the hash and probe caches then key its digest on its stat; one stat serves them all (at AVSBench
    size each stat is ~4 us and a run would otherwise take ~20,000 twice). Only successful stats are kept;
    a missing file is asked again. The stat is still taken before the file is read or its cached digest
    used, as the caches require."""

    def __init__(self) -> None:
        self._stats: dict[str, os.stat_result] = {}

    def lstat(self, path: str) -> os.stat_result:
        """``os.lstat(path)``, the first answer for each path."""
        found = self._stats.get(path)
        if found is None:
            found = self._stats[path] = os.lstat(path)
        return found

    def is_file(self, path: str) -> bool:
        """:func:`is_file` from the remembered ``lstat`` (a link: its target's stat, taken now)."""
        return is_file_by(self.lstat, path)


class FolderCheck:
    """Whether folders exist, each asked once: a missing folder holds no file, so a dozen candidate
    names under it need no ``stat`` each (AVSBench releases without ``raw_videos/``). ``stats``: the run's
    shared stats (None: each file is stat'ed when asked)."""

    def __init__(self, stats: StatOnce | None = None) -> None:
        self._exists: dict[str, bool] = {}
        self.is_file = stats.is_file if stats is not None else is_file

    def may_hold(self, file: str) -> bool:
        """False when the folder of ``file`` is missing (``file`` then is not a file); True otherwise."""
        folder = os.path.dirname(file) or os.curdir
        known = self._exists.get(folder)
        if known is None:
            known = self._exists[folder] = S_ISDIR(_mode(folder))
        return known

    def first_file(self, base: str, extensions: tuple[str, ...]) -> str | None:
        """The first ``base + ext`` that :func:`is_file`, in the order of ``extensions`` (None: none is)."""
        if not self.may_hold(base):
            return None
        return next((base + ext for ext in extensions if self.is_file(base + ext)), None)
