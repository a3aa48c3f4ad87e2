"""sha256 of source files with a stat-keyed cache kept across manifest runs."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.hashing import sha256_of_file


class HashCache:
    """sha256 of files, remembered by (absolute path, size, mtime) so unchanged files are not re-read."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except ValueError:
                self.entries = {}

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self.entries:
            self.entries[key] = sha256_of_file(file)
        return self.entries[key]

    def save(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.entries))
