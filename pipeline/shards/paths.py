"""Where shards live and how video ids name their groups (attributes: :mod:`pipeline.shards.attributes`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote


def shard_name(shard: int) -> str:
    return f"shard-{shard}"


def shard_file(data_root: str | Path, dataset: str, kind: str, shard: int) -> Path:
    return Path(data_root) / dataset / kind / f"{shard_name(shard)}.h5"


def failures_file(shard_path: str | Path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f"{shard_path.stem}.failures.csv")


def group_name(video_id: str) -> str:
    return quote(video_id, safe="")


def video_id_of(group_name_: str) -> str:
    return unquote(group_name_)
