"""The sha256 of a whole shard file, recorded beside it (``shard-N.h5.sha256``, ``sha256sum`` format) by
a stage that wants to trust the shard's index on its next run without reading every video: when the file
hashes to the recorded digest, its bytes are the ones its writer wrote (about 15 ms for a 6 MB shard).

The digest file is written atomically after the shard is renamed into place. A crash between the two
leaves the previous shard's digest (or none): it does not match the new file, so the next run only takes
the slow path (every video checked); a stale digest can never make a different file pass."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_text
from pipeline.hashing import sha256_of_file


def digest_file(shard_path: str | Path) -> Path:
    """Where the digest of ``shard_path`` is recorded (``shard-N.h5`` -> ``shard-N.h5.sha256``)."""
    shard_path = Path(shard_path)
    return shard_path.with_name(f"{shard_path.name}.sha256")


def record_file_digest(shard_path: str | Path) -> str:
    """Hash ``shard_path`` and record the digest beside it (atomically); returns the digest."""
    shard_path = Path(shard_path)
    digest = sha256_of_file(shard_path)
    write_text(digest_file(shard_path), f"{digest}  {shard_path.name}\n")
    return digest


def file_digest_mismatch(shard_path: str | Path) -> str:
    """Why ``shard_path`` cannot be trusted as written ("" when its bytes hash to the recorded digest)."""
    shard_path = Path(shard_path)
    recorded_path = digest_file(shard_path)
    try:
        recorded = recorded_path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return f"no {recorded_path.name}"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{recorded_path.name} unreadable ({exc})"
    if len(recorded) != 2 or recorded[1] != shard_path.name or len(recorded[0]) != 64:
        return f"{recorded_path.name} is not a sha256 line for {shard_path.name}"
    try:
        actual = sha256_of_file(shard_path)
    except OSError as exc:
        return f"{shard_path.name} unreadable ({exc})"
    return "" if actual == recorded[0] else f"{shard_path.name} differs from its {recorded_path.name}"
