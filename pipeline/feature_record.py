"""The typed record of the settings a feature stage ran with, and the one way to read it back.

Every feature stage (``extract``, ``audio``, ``proposals``) writes its params dataclass, whole, as
one file attribute of its shard under the key ``<kind>_params``. Training copies the records into
the checkpoint (``feature_params``: kind -> record), and ``avs predict`` / ``avs evaluate`` rebuild
the dataclasses from there with the same strict loader as the stages (:func:`pipeline.params.from_section`
with every field required), so a new video gets exactly the features the model was trained on, and a
record that is incomplete or has unknown fields is an error naming where it came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.params import ParamsError, from_section

KINDS = ("extract", "audio", "proposals")  # the feature stages, in pipeline order
_CLASSES: dict[str, type] = {}  # kind -> params dataclass, filled by @feature_params where each is defined
C = TypeVar("C", bound=type)


def feature_params(kind: str) -> Callable[[C], C]:
    """Class decorator: ``cls`` is the params dataclass of feature stage ``kind``. (A registry rather than
    a list of module names here, so that this module does not make every stage depend on every other.)"""

    def register(cls: C) -> C:
        _CLASSES[record_key(kind)] = cls
        return cls

    return register


def record_key(kind: str) -> str:
    if kind not in KINDS:
        raise KeyError(f"unknown feature kind {kind!r}; known: {list(KINDS)}")
    return f"{kind}_params"


def params_class(kind: str) -> type:
    key = record_key(kind)
    if key not in _CLASSES:
        raise KeyError(f"the params class of {kind!r} is not registered (import its module first)")
    return _CLASSES[key]


def record_attrs(kind: str, params: Any) -> dict[str, dict[str, Any]]:
    """The shard file attribute holding ``params`` (a dataclass of ``kind``'s class)."""
    if not isinstance(params, params_class(kind)):
        raise TypeError(f"{kind} record must be a {params_class(kind).__name__}, got {type(params).__name__}")
    return {record_key(kind): dataclasses.asdict(params)}


def read_record(kind: str, mapping: Any, where: str) -> Any:
    """``kind``'s params dataclass from a stored record; ``where`` names the file (and key) in errors."""
    if mapping is None:
        raise ParamsError(f"{where}: no {record_key(kind)} record (made by an older version? rerun its stage)")
    return from_section(params_class(kind), mapping, f"{where}: {record_key(kind)}", complete=True)


def records_from_attrs(attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """kind -> raw record, for every record present in a shard's file attributes."""
    return {kind: attrs[record_key(kind)] for kind in KINDS if record_key(kind) in attrs}
