"""Manifest CSV files: the whole-dataset manifest and its per-shard slices, written atomically and
validated row by row when read."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

from pipeline.atomic import write_csv
from pipeline.manifest.schema import COLUMNS, OPTIONAL_COLUMNS, ManifestError, ManifestRow, validate_video_id
from pipeline.params import ParamsError, from_section


def write_manifest(rows: list[ManifestRow], path: str | Path) -> None:
    write_csv(path, (asdict(row) for row in rows), COLUMNS)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `avs manifest` first)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL_COLUMNS]
            if missing:
                raise ManifestError(f"{path}: not a manifest, missing column(s) {missing}")
            return [_row_from_csv(rec, f"{path}:{reader.line_num}") for rec in reader]
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a UTF-8 text CSV (a binary file?)") from None
    except csv.Error as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from None


def _row_from_csv(rec: dict[str, str | None], where: str) -> ManifestRow:
    """One CSV record -> a validated row; errors name ``where`` (file:line) and the column."""
    values = {k: rec.get(k) or "" for k in COLUMNS}
    values.update({k: default for k, default in OPTIONAL_COLUMNS.items() if not values[k]})
    try:
        row = from_section(ManifestRow, values, where)
    except ParamsError as exc:
        raise ManifestError(str(exc).replace(f"params '{where}'", where)) from None
    if row.num_seconds == 0 and not row.probe_error:
        raise ManifestError(f"{where}.num_seconds must be >= 1 for a readable video, got 0")
    validate_video_id(row.video_id, where)
    return row


def shard_slice_file(data_root: str | Path, dataset: str, shard: int) -> Path:
    return Path(data_root) / dataset / "manifest" / f"shard-{shard}.csv"


def write_shard_slices(rows: list[ManifestRow], data_root: str | Path, dataset: str, num_shards: int) -> list[Path]:
    """Write one manifest slice per shard (empty slices too, so every DVC stage item has its input)."""
    out = []
    folder = Path(data_root) / dataset / "manifest"
    for stale in folder.glob("shard-*.csv") if folder.is_dir() else []:
        if int(stale.stem.split("-")[1]) >= num_shards:
            stale.unlink()
    for shard in range(num_shards):
        path = shard_slice_file(data_root, dataset, shard)
        write_manifest([r for r in rows if r.shard == shard], path)
        out.append(path)
    return out
