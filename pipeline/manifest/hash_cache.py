"""sha256 of source files with a stat-keyed cache kept across manifest runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.hashing import sha256_of_file


class HashCache:
    """sha256 of files, reused only while the file's (inode, size, mtime_ns, ctime_ns) all match, as DVC
    does: an edit that keeps size and mtime (``touch -r``, a restored timestamp) still changes the ctime.

    File: ``{"format": 2, "entries": {absolute path: [inode, size, mtime_ns, ctime_ns, sha256]}}``. It is
    only a cache, so a malformed one is ignored with a warning naming it (every file is hashed again and
    the file is rewritten); a cache of the earlier format (keys ``path|size|mtime``) is dropped quietly."""

    FORMAT = 2

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        if path is not None and path.is_file():
            self.entries = self._read(path)

    @classmethod
    def _read(cls, path: Path) -> dict[str, list]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: unreadable hash cache ignored ({exc})", stacklevel=3)
            return {}
        if isinstance(data, dict) and "format" not in data and all(isinstance(v, str) for v in data.values()):
            return {}  # the earlier (path|size|mtime) format: recomputed once
        entries = data.get("entries") if isinstance(data, dict) and data.get("format") == cls.FORMAT else None
        if not isinstance(entries, dict):
            warnings.warn(f"{path}: not a hash cache of this version (ignored; files are hashed again)", stacklevel=3)
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, list) and len(v) == 5 and isinstance(v[4], str)}

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        identity = [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        entry = self.entries.get(key)
        if entry is None or entry[:4] != identity:
            self.entries[key] = [*identity, sha256_of_file(file)]
        return self.entries[key][4]

    def save(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"format": self.FORMAT, "entries": self.entries}))
