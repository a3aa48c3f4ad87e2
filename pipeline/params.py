"""Loading and validating ``params.yaml`` (the one place that knows its shape).

Stages read their own section; :func:`from_section` turns a mapping into a dataclass and rejects
unknown keys, so a typo in params.yaml is a clear error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

DEFAULT_PARAMS = Path("params.yaml")
T = TypeVar("T")


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or a section does not validate."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return data


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in params:
        raise ParamsError(f"params.yaml has no '{name}' section")
    value = params[name]
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(f"params.yaml section '{name}' must be a mapping")
    return value


def params_hash(obj: Any) -> str:
    """Stable 16-hex-digit hash of a JSON-able object (key order does not matter)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return from_section(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise ParamsError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    return value


def from_section(cls: type[T], mapping: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``mapping``; unknown keys and wrong types raise ParamsError."""
    mapping = mapping or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ParamsError(f"params '{where}': unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in mapping.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"params '{where}': {exc}") from exc


@dataclasses.dataclass
class DaskParams:
    """``dask`` section: where preprocessing runs."""

    scheduler_address: str | None = None  # e.g. "tcp://10.0.0.5:8786"; None = a local cluster
    n_workers: int | None = None  # local cluster size; None = one per core; 0 = in-process (no cluster)
    threads_per_worker: int = 1
    processes: bool = False  # local cluster: threads in this process (fast start, shared models) or worker processes
    max_in_flight: int | None = None  # tasks submitted ahead of the writer; None = 2 x workers


@dataclasses.dataclass
class DataParams:
    """``data`` section: where generated data lives and how datasets are sharded."""

    root: str = "data"
    manifests: str = "data_manifests"
    datasets: list[str] = dataclasses.field(default_factory=list)
    shards: list[int] = dataclasses.field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if sorted(self.shards) != list(range(len(self.shards))):
            raise ValueError(f"data.shards must be 0..N-1 in some order, got {self.shards}")

    @property
    def num_shards(self) -> int:
        return len(self.shards)


def load_dataclass(cls: type[T], name: str, params: dict[str, Any] | None = None,
                   path: str | Path = DEFAULT_PARAMS) -> T:
    """Read section ``name`` of params.yaml (or of ``params``) into dataclass ``cls``."""
    params = load_params(path) if params is None else params
    return from_section(cls, params.get(name) or {}, name)
