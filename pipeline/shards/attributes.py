"""How attribute values are stored in HDF5 and read back.

Scalars and arrays are stored as they are; ``None`` is the string ``"null"``; anything else (lists,
dicts, paths) is canonical JSON. :func:`from_attr` reverses it, so ``from_attr(to_attr(x)) == x``
for the JSON-representable values the writers store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np


def to_attr(value: Any) -> Any:
    """The value as h5py can store it as an attribute."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=str)


def from_attr(value: Any) -> Any:
    """The Python value of a stored attribute (the inverse of :func:`to_attr`)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if value == "null":
        return None
    return value


class AttributeView:
    """The attributes of one stored object (an h5py ``AttributeManager``), each read back (:func:`from_attr`)
    at most once. Their names are listed once up front: HDF5 answers a ``key in attrs`` test with as much
    work as a read, so checking a video before reusing it, copying it and reading its warnings would
    otherwise ask several times for the same few attributes."""

    def __init__(self, attrs: Any) -> None:
        self._attrs = attrs
        self.names = frozenset(attrs)
        self._values: dict[str, Any] = {}

    def __contains__(self, key: object) -> bool:
        return key in self.names

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.names:
            return default
        if key not in self._values:
            self._values[key] = from_attr(self._attrs[key])
        return self._values[key]

    def pick(self, keys: Iterable[str]) -> dict[str, Any]:
        """The present ones of ``keys`` (in that order) and their values."""
        return {key: self.get(key) for key in keys if key in self.names}
