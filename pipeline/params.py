"""Loading and validating ``params.yaml``: its sections, the shared ``data`` / ``dask`` dataclasses and the
strict loader every section goes through (each other section's dataclass lives next to its library code).

Stages read their own section; :func:`from_section` turns a mapping into a dataclass and rejects
unknown keys, so a typo in params.yaml is a clear error rather than a silently ignored setting.
Types and ranges are checked by pydantic against the dataclass annotations (``Annotated[int,
Field(ge=1)]``): a maintained validator, with the messages shortened to one line naming the key.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

DEFAULT_PARAMS = Path("params.yaml")
T = TypeVar("T")


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or a section does not validate."""


# Top-level sections of params.yaml (each read by the stages named in dvc.yaml). Anything else is a typo
# (``trian:``) whose settings would be silently ignored.
SECTIONS = ("data", "dask", "demo", "manifest", "extract", "audio", "proposals", "train", "evaluate")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line}; first on line {seen[key]})", key_node.start_mark
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The params file as a mapping of known sections: not empty, no duplicate keys, no unknown section."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root or pass --params)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        raise ParamsError(f"{path}: the params file is empty (expected the sections {list(SECTIONS)})")
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    unknown = [key for key in data if key not in SECTIONS]
    if unknown:
        raise ParamsError(f"{path}: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    return data


def params_hash(obj: Any) -> str:
    """Stable 16-hex-digit hash of a JSON-able object (key order does not matter)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# Constraint markers for params fields, e.g. ``max_steps: PositiveInt = 1000`` (pydantic checks them).
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
# Dataset names become folder names and are interpolated into dvc.yaml commands: no separators, no dots first.
DatasetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# Image sizes: one frame of H*W*3 bytes (uint8 RGB) must fit a per-frame budget of MAX_SIDE**2 * 3 bytes
# (48 MiB, one 4096x4096 frame), and neither side may pass MAX_SIDE (a [8, 1000000] strip is not a frame).
# The budget bounds what one decoded frame, one resize and one model input cost, whatever T or the batch.
MAX_SIDE = 4096
Size2 = Annotated[list[Annotated[int, Field(ge=8, le=MAX_SIDE)]], Field(min_length=2, max_length=2)]  # [H, W], pixels
Split = Literal["train", "val", "test"]

_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_MAX_SHOWN = 60  # characters of an offending value shown in a message


def _with_forbidden_extras(cls: type) -> None:
    """Unknown keys are errors and floats must be finite, in ``cls`` and in every dataclass nested in it."""
    if "__pydantic_config__" not in vars(cls):
        # allow_inf_nan=False: every float field of every section is finite (``.inf`` / ``.nan`` in YAML
        # would pass any range check written as a comparison, and fail later, after outputs exist).
        cls.__pydantic_config__ = ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)
    for hint in typing.get_type_hints(cls).values():
        for inner in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(inner) and isinstance(inner, type):
                _with_forbidden_extras(inner)


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    _with_forbidden_extras(cls)
    return TypeAdapter(cls)


def _describe(error: dict[str, Any], where: str, cls: type) -> str:
    """One pydantic error -> ``train.max_steps must be >= 1, got -5``."""
    key = ".".join([where, *(str(part) for part in error["loc"])])
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "..."
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"{key} must be {_BOUNDS[kind]} {bound}, got {shown}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = sorted(f.name for f in dataclasses.fields(cls)) if not error["loc"][:-1] else []
        return f"params '{where}': unknown key {error['loc'][-1]!r}" + (f"; known: {known}" if known else "")
    if kind == "value_error":
        reason = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            return f"{key}: {reason}"
        return reason if reason.startswith(f"{where}.") else f"params '{where}': {reason}"
    return f"{key}: {error['msg'].lower()}, got {shown}"


def from_section(cls: type[T], mapping: dict[str, Any] | None, where: str, *, complete: bool = False) -> T:
    """Build params dataclass ``cls`` from ``mapping``: types, ranges (``Annotated`` constraints) and
    ``__post_init__`` checks, unknown keys rejected; any failure is one ParamsError line naming the key.
    ``complete``: every field must be given (records read back from shards and checkpoints)."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ParamsError(f"params '{where}' must be a mapping, got {type(mapping).__name__}")
    if complete:
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in mapping)
        if missing:
            raise ParamsError(f"{where}: missing field(s) {missing}")
    try:
        return _adapter(cls).validate_python(mapping)
    except ValidationError as exc:
        raise ParamsError(_describe(exc.errors()[0], where, cls)) from None


@dataclasses.dataclass
class DaskParams:
    """``dask`` section: where preprocessing runs."""

    scheduler_address: str | None = None  # e.g. "tcp://10.0.0.5:8786"; None = a local cluster
    n_workers: NonNegativeInt | None = None  # local cluster size; None = one per core; 0 = in-process (no cluster)
    threads_per_worker: PositiveInt = 1
    processes: bool = False  # local cluster: threads in this process (fast start, shared models) or worker processes
    max_in_flight: PositiveInt | None = None  # tasks submitted ahead of the writer; None = 2 x workers


@dataclasses.dataclass
class DataParams:
    """``data`` section: where generated data lives and how datasets are sharded."""

    root: str = "data"
    manifests: str = "data_manifests"
    datasets: list[DatasetName] = dataclasses.field(default_factory=list)
    shards: list[NonNegativeInt] = dataclasses.field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.shards or sorted(self.shards) != list(range(len(self.shards))):
            raise ValueError(f"data.shards must be 0..N-1 in some order, got {self.shards}")

    @property
    def num_shards(self) -> int:
        return len(self.shards)
