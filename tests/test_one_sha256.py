"""One implementation of file hashing: ``pipeline/hashing.py``.

The rule, checked on the sources with ``ast`` (in the manner of ``tests/test_dvc_deps.py``): outside
``pipeline/hashing.py`` no module in pipeline/, stages/, train/ or benchmarks/ hashes a file's bytes
with ``hashlib`` itself. That means no streaming digest (``hashlib.<algo>()`` created empty and fed
block by block with ``update``), no ``hashlib.file_digest``, and no digest of ``read_bytes()`` /
``.read()`` output. Files are hashed with ``pipeline.hashing.sha256_of_file`` (or the memoised
``file_sha256``, or ``HashCache`` for sources, which calls it). One-shot digests of values already in
memory (a video id for its shard, canonical params JSON, an archive member, a frame array) stay
where they are: they hash a value, not a file, and moving them would add an import and nothing else.
Tests are exempt (they recompute hashes independently to check the implementation)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("pipeline", "stages", "train", "benchmarks")
THE_IMPLEMENTATION = "pipeline/hashing.py"
ALGORITHMS = {"sha256", "sha1", "md5", "sha512", "blake2b", "blake2s", "new"}
FILE_READS = {"read_bytes", "read"}


def _hashlib_call(node: ast.AST) -> str | None:
    """``sha256`` for ``hashlib.sha256(...)``, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if isinstance(node.func.value, ast.Name) and node.func.value.id == "hashlib":
            return node.func.attr
    return None


def _reads_a_file(node: ast.AST) -> bool:
    return any(
        isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr in FILE_READS
        for inner in ast.walk(node)
    )


def file_hashing_sites(source: str, name: str) -> list[str]:
    """``name:line hashlib.algo`` of every place the Python ``source`` hashes a file with hashlib itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        algo = _hashlib_call(node)
        if algo is None:
            continue
        streaming = algo in ALGORITHMS and not node.args and algo != "new"
        streaming |= algo == "new" and len(node.args) < 2
        if algo == "file_digest" or streaming or any(_reads_a_file(arg) for arg in node.args):
            found.append(f"{name}:{node.lineno} hashlib.{algo}")
    return found


def scanned_files() -> list[Path]:
    return sorted(p for package in SCANNED for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_is_hashed_outside_pipeline_hashing(path):
    name = str(path.relative_to(REPO))
    sites = file_hashing_sites(path.read_text(encoding="utf-8"), name)
    assert name == THE_IMPLEMENTATION or not sites, f"hash files with {THE_IMPLEMENTATION}, not here: {sites}"


def test_the_rule_sees_streaming_loops_and_digests_of_file_reads():
    own = file_hashing_sites((REPO / THE_IMPLEMENTATION).read_text(encoding="utf-8"), THE_IMPLEMENTATION)
    assert own, "the one implementation streams a file through hashlib.sha256(): the check must see it"
    read_bytes = "import hashlib\nhashlib.sha256(path.read_bytes()).hexdigest()\n"
    assert file_hashing_sites(read_bytes, "x.py") == ["x.py:2 hashlib.sha256"]
    assert file_hashing_sites("import hashlib\nhashlib.file_digest(fh, 'sha256')\n", "y.py") == [
        "y.py:2 hashlib.file_digest"
    ]
    in_memory = "import hashlib\nhashlib.sha256(video_id.encode()).digest()\n"
    assert file_hashing_sites(in_memory, "z.py") == []
