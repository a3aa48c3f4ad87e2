"""A source tree's stamp: one small JSON file that changes whenever a file the manifest may read changes.

DVC hashes a directory dependency by visiting every file of it (a stat and a state-database lookup each,
about 55 us per file), on every ``dvc status`` and ``dvc repro``: about 5 s for the AVSBench release
trees. The ``source_tree`` / ``maskige_tree`` stages (dvc.yaml, ``avs tree-stamp``) walk the tree
instead, with one ``stat`` per file (a few us), and the manifest depends on the stamp only
(docs/pipeline.md, "Source-tree stamps").

The digest covers each regular file's (relative path, size, mtime_ns, ctime_ns, inode), in sorted order,
so an edit, a touch, a rename, a new or a removed file changes it; ctime and inode catch a file
replaced with the same size and mtime, as DVC's own state database does. The walk follows the
manifest's rules (docs/data.md, ``pipeline/manifest/sources.py``): hidden files and folders are not
read, a symbolic link to a file inside the root is read under the link's name (the target's stat),
a link to a file outside the root is not read, and links to folders are never entered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.atomic import write_bytes_if_changed
from pipeline.hashing import sha256_of_records

FORMAT = 1  # bump when the digest's input changes: every stamp then differs once, and the manifests rerun
# Folders a manifest source never reads, by ``manifest.datasets.D.source``: the AVSBench readers build every
# path from the meta CSV (visual_frames, gt_masks, audio_wav, raw videos), and COMBO's maskiges, which the
# releases keep inside the tree, have their own stamp (D/maskige_tree.json): walking them here too cost S4's
# source stamp 24,670 of its 65,129 files on every `dvc repro`. A ``folder`` source reads every video file.
NOT_READ_BY_SOURCE = {
    "avsbench_s4": frozenset({"pre_SAM_mask"}),
    "avsbench_ms3": frozenset({"pre_SAM_mask"}),
    "avsbench_semantic": frozenset({"pre_SAM_mask"}),
    "folder": frozenset(),
}


class TreeStampError(ValueError):
    """A tree that cannot be stamped or a stamp file that cannot be used; one line naming the path."""


@dataclass(frozen=True)
class TreeStamp:
    """What the stamp file holds: the tree as given, its file count and bytes, and the digest (64 hex)."""

    tree: str
    files: int
    bytes: int
    digest: str
    format: int = FORMAT

    def to_text(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def _link_is_read(entry: os.DirEntry, real_root: str) -> bool:
    """The manifest's link rule for a symbolic link (``sources._link_reason``): read only when it points
    at a file inside the root."""
    target = os.path.realpath(entry.path)
    inside = target.startswith(real_root.rstrip(os.sep) + os.sep)
    return inside and os.path.isfile(target)


def _listing(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:
        raise TreeStampError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None


def _folder_records(
    folder: str, prefix: str, real_root: str, subfolders: list, skip: frozenset[str]
) -> tuple[bytes, int, int]:
    """The records of the files read in ``folder`` (names in sorted order) as one bytes block, with their
    count and bytes; its subfolders (not links, not named in ``skip``) are appended to ``subfolders`` as
    (path, prefix)."""
    records, total = [], 0
    for entry in _listing(folder):
        if entry.name.startswith("."):
            continue  # hidden: never read by the manifest (and where writers keep their temporaries)
        if entry.is_symlink():
            if not _link_is_read(entry, real_root):
                continue
        elif entry.is_dir():
            if entry.name not in skip:
                subfolders.append((entry.path, f"{prefix}{entry.name}/"))
            continue
        try:
            st = entry.stat()  # follows a link that is read: the target's size and times
        except FileNotFoundError:
            continue  # removed while we walked: absent, as the next walk will say
        if entry.is_file():
            total += st.st_size
            fields = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0"
            records.append(os.fsencode(prefix + entry.name) + b"\0" + fields.encode())
    return b"".join(records), len(records), total


def stamp_tree(tree: str | Path, skip: frozenset[str] = frozenset()) -> TreeStamp:
    """Walk ``tree`` (a folder) and return its stamp; ``TreeStampError`` when it is no folder. Folders named in
    ``skip`` are not entered, at any depth (``NOT_READ_BY_SOURCE``).

    Order: a folder's files by name, then its subfolders by name, each walked the same way (one record
    per file, ``path\\0size\\0mtime_ns\\0ctime_ns\\0inode\\0``, one digest update per folder)."""
    root = os.fspath(tree)
    if not os.path.isdir(root):
        raise TreeStampError(f"{root}: not a folder")
    real_root = os.path.realpath(root)
    counts = {"files": 0, "bytes": 0}

    def blocks() -> Iterator[bytes]:
        todo = [(root, "")]
        while todo:
            folder, prefix = todo.pop()
            subfolders: list[tuple[str, str]] = []
            block, files, size = _folder_records(folder, prefix, real_root, subfolders, skip)
            counts["files"] += files
            counts["bytes"] += size
            todo.extend(reversed(subfolders))  # popped in name order: depth first, sorted
            yield block

    digest = sha256_of_records(blocks())
    return TreeStamp(tree=root, files=counts["files"], bytes=counts["bytes"], digest=digest)


def read_stamp(path: str | Path) -> TreeStamp:
    """The stamp stored in ``path``, checked field by field; ``TreeStampError`` naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TreeStampError(f"{path}: not a readable tree stamp ({exc})") from None
    wanted = {"tree": str, "files": int, "bytes": int, "digest": str, "format": int}
    if not isinstance(data, dict) or set(data) != set(wanted):
        raise TreeStampError(f"{path}: not a tree stamp (keys must be {sorted(wanted)})")
    for key, kind in wanted.items():
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise TreeStampError(f"{path}: tree stamp field {key!r} is not a valid {kind.__name__}: {value!r}")
    if data["format"] != FORMAT:
        raise TreeStampError(f"{path}: tree stamp format {data['format']}, this code writes format {FORMAT}")
    if len(data["digest"]) != 64 or any(c not in "0123456789abcdef" for c in data["digest"]):
        raise TreeStampError(f"{path}: tree stamp digest is not 64 lowercase hex characters")
    return TreeStamp(**data)


def write_stamp(stamp: TreeStamp, path: str | Path) -> bool:
    """Write ``stamp`` to ``path`` unless the file already holds exactly that text (its mtime then stays, and
    DVC sees an unchanged output); True when written."""
    return write_bytes_if_changed(path, stamp.to_text().encode("utf-8"))
