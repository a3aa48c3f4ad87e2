"""How attribute values are stored in HDF5 and read back.

Scalars and arrays are stored as they are; ``None`` is the string ``"null"``; anything else (lists,
dicts, paths) is canonical JSON. :func:`from_attr` reverses it, so ``from_attr(to_attr(x)) == x``
for the JSON-representable values the writers store.
"""

from __future__ import annotations

import json
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
