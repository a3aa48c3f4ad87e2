"""Where shards live and how ids and attributes are stored in them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

GZIP_LEVEL = 4  # level 4 is within a few % of 9 in size on frames and several times faster


def shard_name(shard: int) -> str:
    return f"shard-{shard}"


def shard_file(data_root: str | Path, dataset: str, kind: str, shard: int) -> Path:
    return Path(data_root) / dataset / kind / f"{shard_name(shard)}.h5"


def failures_file(shard_path: str | Path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f"{shard_path.stem}.failures.csv")


def group_name(video_id: str) -> str:
    return quote(video_id, safe="")


def to_attr(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=str)


def from_attr(value: Any) -> Any:
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


def video_id_of(group_name_: str) -> str:
    return unquote(group_name_)


class ShardError(RuntimeError):
    """A shard file is missing, unreadable or lacks what was asked for."""
