"""On-disk cache of the edited YAMNet graph, so that building the encoder needs neither ``onnx`` nor the edit.

Building YAMNet from its source archive costs about 1 s before the session: ``import onnx`` (0.66 s) and
reading + editing the graph (0.15 s). Adding one video to a shard builds the encoder for that video alone,
so that second is most of the rerun. The edit is a pure function of (the source archive, the code that
edits it, the onnx version that serialises it), so its result is stored once and read back after.

An entry is two files in the cache folder, named by the first 16 hex digits of the source's sha256 (one
entry per source: a new key for the same source replaces it in place, so entries never pile up):

- ``<name>.onnx``: the edited model bytes, exactly what the onnxruntime session is built from;
- ``<name>.json``: ``{"format", "key": {source_sha256, code_digest, onnx_version}, "model_sha256",
  "model_size", "graph": {the graph's fields but its bytes}, "checksum"}``; ``checksum`` is the sha256 of
  the canonical JSON of everything else.

Nothing read back is trusted: an entry is used only when its JSON parses with every field of the right
type, its checksum and key match, and the model file has the recorded size and sha256. Anything else is one
:class:`GraphCacheWarning` naming the file and the reason; the caller rebuilds and rewrites the entry.
Writes go through :mod:`pipeline.atomic` (model first, JSON last, so a JSON never names a model not yet in
place) and are best effort: a read-only or full disk warns and the caller goes on with the graph in memory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_bytes, write_json

FORMAT = 1
_ENTRY_KEYS = {"format", "key", "model_sha256", "model_size", "graph", "checksum"}


class GraphCacheWarning(UserWarning):
    """A cache entry was refused or could not be written (the graph is rebuilt / kept in memory)."""


@dataclass(frozen=True)
class GraphKey:
    """What the edited graph is a function of: an entry made under another key is never used."""

    source_sha256: str  # of the archive the weights come from
    code_digest: str  # of the code that edits and stores the graph (every ``pipeline`` source)
    onnx_version: str  # of the installed onnx package, read without importing it

    @property
    def entry_name(self) -> str:
        return self.source_sha256[:16]


def installed_version(package: str) -> str:
    """The installed version of ``package`` from its metadata (no import); "absent" when not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def entry_checksum(body: dict[str, Any]) -> str:
    """sha256 of an entry's JSON body (every key but ``checksum``), canonical (sorted keys, no spaces)."""
    fields = {key: value for key, value in body.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _warn(path: Path, reason: str) -> None:
    """One warning line naming the file; returns None, so that ``return _warn(...)`` refuses an entry."""
    warnings.warn(f"{path}: YAMNet graph cache entry {reason}", GraphCacheWarning, stacklevel=2)


def _field_problem(values: Any, types: dict[str, type]) -> str | None:
    """Why ``values`` is not a mapping with exactly the keys of ``types``, each of exactly its type."""
    if not isinstance(values, dict) or set(values) != set(types):
        return f"has fields {sorted(values) if isinstance(values, dict) else type(values).__name__}, expected {sorted(types)}"
    for name, kind in types.items():
        if type(values[name]) is not kind:  # exact: a bool is no int, an int no float
            return f"field {name!r} is {type(values[name]).__name__}, expected {kind.__name__}"
    return None


def _body_problem(body: Any, key: GraphKey) -> str | None:
    """Why a parsed JSON body is not an entry of ``key`` (its graph fields are checked by the caller)."""
    if not isinstance(body, dict) or set(body) != _ENTRY_KEYS:
        return f"is not an entry (expected the keys {sorted(_ENTRY_KEYS)})"
    if body["checksum"] != entry_checksum(body):
        return "fails its checksum (edited or corrupted)"
    if body["format"] != FORMAT:
        return f"has format {body['format']!r}, expected {FORMAT}"
    stored = body["key"]
    problem = _field_problem(stored, {name: str for name in asdict(key)})
    if problem is not None:
        return f"key {problem}"
    differs = [name for name, value in asdict(key).items() if stored[name] != value]
    if differs:
        return f"was made for another key ({', '.join(differs)} differs)"
    return _field_problem(
        {name: body[name] for name in ("model_sha256", "model_size")}, {"model_sha256": str, "model_size": int}
    )


@dataclass(frozen=True)
class GraphCache:
    """The entries of one cache folder (created on first write)."""

    folder: Path

    def paths(self, key: GraphKey) -> tuple[Path, Path]:
        """(model file, JSON file) of ``key``'s entry."""
        return self.folder / f"{key.entry_name}.onnx", self.folder / f"{key.entry_name}.json"

    def read(self, key: GraphKey, graph_fields: dict[str, type]) -> tuple[bytes, dict[str, Any]] | None:
        """(model bytes, graph fields) of ``key``'s entry when it is present and passes every check; None
        otherwise (with a :class:`GraphCacheWarning` naming the file when an entry was there but refused)."""
        model_path, json_path = self.paths(key)
        try:
            text = json_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # no entry (yet); the write will say if it cannot be made
            return None
        except OSError as error:
            return _warn(json_path, f"is unreadable ({error}); rebuilt")
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError; absurd nesting
            return _warn(json_path, f"is not valid JSON ({error}); rebuilt")
        problem = _body_problem(body, key) or _field_problem(body["graph"], graph_fields)
        if problem is not None:
            return _warn(json_path, f"{problem}; rebuilt")
        model = self._verified_model(model_path, body)
        return None if model is None else (model, body["graph"])

    def _verified_model(self, model_path: Path, body: dict[str, Any]) -> bytes | None:
        try:
            size = model_path.stat().st_size
            if size != body["model_size"]:
                return _warn(model_path, f"holds {size} bytes, its JSON says {body['model_size']}; rebuilt")
            model = model_path.read_bytes()
        except OSError as error:
            return _warn(model_path, f"is unreadable ({error}); rebuilt")
        if hashlib.sha256(model).hexdigest() != body["model_sha256"]:
            return _warn(model_path, "does not hash to the model_sha256 of its JSON; rebuilt")
        return model

    def write(self, key: GraphKey, model: bytes, graph: dict[str, Any]) -> None:
        """Store an entry (model first, JSON last); a failed write warns and leaves the caller's graph in use."""
        model_path, json_path = self.paths(key)
        body: dict[str, Any] = {
            "format": FORMAT,
            "key": asdict(key),
            "model_sha256": hashlib.sha256(model).hexdigest(),
            "model_size": len(model),
            "graph": graph,
        }
        body["checksum"] = entry_checksum(body)
        try:
            write_bytes(model_path, model)
            write_json(json_path, body)
        except OSError as error:  # read-only folder, full disk (DiskFullError), a file where the folder should be
            _warn(json_path, f"could not be written ({error}); the graph is used from memory")
