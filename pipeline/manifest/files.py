"""Manifest CSV files: the whole-dataset manifest and its per-shard slices, written atomically and
validated row by row when read."""

from __future__ import annotations

import csv
import io
import operator
import re
from pathlib import Path

from pipeline.atomic import write_bytes_if_changed
from pipeline.manifest.schema import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    ManifestError,
    ManifestRow,
    padding_limit,
    validate_video_id,
)
from pipeline.params import ParamsError, from_section

_ROW_VALUES = operator.attrgetter(*COLUMNS)  # a row's cells in column order


# Characters that make csv's minimal quoting quote a cell (delimiter, quote character, line end): a line
# without any is its cells joined by commas, as ``csv.writer`` writes it.
_QUOTED_CHARACTERS = re.compile(r'[,"\r\n]')
_PLAIN_TYPES = frozenset({str, int})  # cells csv writes as str() gives them (not bool, float or None)


def _csv_line(cells: tuple) -> str:
    """``cells`` as ``csv.writer`` writes them (excel dialect, CRLF): joined directly for str / int cells
    holding nothing that is quoted (a manifest's rows: half the time), else by the csv module itself (which
    also quotes the one empty cell of a one-column row)."""
    if len(cells) > 1 and _PLAIN_TYPES.issuperset(map(type, cells)):
        texts = list(map(str, cells))
        if not _QUOTED_CHARACTERS.search("".join(texts)):
            return ",".join(texts) + "\r\n"
    text = io.StringIO(newline="")
    csv.writer(text).writerow(cells)
    return text.getvalue()


_HEADER = _csv_line(tuple(COLUMNS))


def manifest_bytes(rows: list[ManifestRow]) -> bytes:
    """The manifest CSV of ``rows`` (header, then one line per row; CRLF line ends, UTF-8)."""
    return (_HEADER + "".join([_csv_line(_ROW_VALUES(row)) for row in rows])).encode("utf-8")


def write_manifest(rows: list[ManifestRow], path: str | Path) -> bool:
    """Write the manifest CSV of ``rows`` atomically unless ``path`` already holds exactly those bytes
    (then the file, its inode and its times are left as they are, so its readers see nothing change;
    abandoned temporaries beside it are removed as a write would). Returns whether it was written."""
    return write_bytes_if_changed(path, manifest_bytes(rows))


def read_manifest(path: str | Path, num_shards: int | None = None) -> list[ManifestRow]:
    """Every row of a manifest CSV (or slice), each field validated; errors name ``file:line.column``.
    A UTF-8 byte-order mark and CRLF line ends are accepted; an id on two lines is refused naming both;
    ``num_shards`` (data.shards), when given, bounds the shard column."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `avs manifest` first)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL_COLUMNS]
            if missing:
                raise ManifestError(f"{path}: not a manifest, missing column(s) {missing}")
            rows, first_line = [], {}
            start = reader.line_num + 1
            for rec in reader:
                where = f"{path}:{start}"  # the line the record starts on (a quoted cell may span lines)
                row = _row_from_csv(rec, where, num_shards)
                if row.video_id in first_line:
                    raise ManifestError(f"{where}.video_id: {row.video_id!r} repeats line {first_line[row.video_id]}")
                first_line[row.video_id] = start
                rows.append(row)
                start = reader.line_num + 1
            return rows
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a UTF-8 text CSV (a binary file?)") from None
    except csv.Error as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from None


def _row_from_csv(rec: dict[str, str | None], where: str, num_shards: int | None = None) -> ManifestRow:
    """One CSV record -> a validated row; errors name ``where`` (file:line) and the column."""
    if None in rec:  # csv puts the cells beyond the header under the key None
        raise ManifestError(f"{where}: {len(rec[None])} cell(s) more than the header's {len(COLUMNS)} columns")
    values = {k: rec.get(k) or "" for k in COLUMNS}
    values.update({k: default for k, default in OPTIONAL_COLUMNS.items() if not values[k]})
    try:
        row = from_section(ManifestRow, values, where)
    except ParamsError as exc:
        raise ManifestError(str(exc).replace(f"params '{where}'", where)) from None
    validate_video_id(row.video_id, f"{where}.video_id")
    _check_consistency(row, where, num_shards)
    return row


def _check_consistency(row: ManifestRow, where: str, num_shards: int | None) -> None:
    """Fields that are each valid but do not fit together (or with data.shards)."""
    if row.num_seconds == 0 and not row.probe_error:
        raise ManifestError(f"{where}.num_seconds must be >= 1 for a readable video, got 0")
    if num_shards is not None and row.shard >= num_shards:
        raise ManifestError(f"{where}.shard must be < {num_shards} (data.shards has {num_shards}), got {row.shard}")
    if row.duration and not row.probe_error and row.num_seconds > padding_limit(float(row.duration)):
        raise ManifestError(
            f"{where}.num_seconds: {row.num_seconds} s for a source of {row.duration} s "
            f"(at most {padding_limit(float(row.duration))}: the last frame would be repeated for the rest)"
        )
    labels = len(row.label_paths.split(";")) if row.label_paths else 0
    if labels and labels != row.num_seconds:
        raise ManifestError(f"{where}.label_paths: {labels} entries for num_seconds {row.num_seconds}")


SLICE_NAME = re.compile(r"shard-(0|[1-9][0-9]{0,8})\.csv")  # the names write_shard_slices writes


def shard_slice_file(data_root: str | Path, dataset: str, shard: int) -> Path:
    return Path(data_root) / dataset / "manifest" / f"shard-{shard}.csv"


def write_shard_slices(rows: list[ManifestRow], data_root: str | Path, dataset: str, num_shards: int) -> list[Path]:
    """Write one manifest slice per shard (empty slices too, so every DVC stage item has its input); a
    slice whose bytes did not change is left as it is (see :func:`write_manifest`)."""
    out = []
    folder = Path(data_root) / dataset / "manifest"
    for stale in folder.iterdir() if folder.is_dir() else []:
        # Only this function's own files (shard-<N>.csv exactly) are ever removed; a user's
        # shard-5-backup.csv or shard-abc.csv beside them is left alone.
        owned = SLICE_NAME.fullmatch(stale.name)
        if owned and int(owned.group(1)) >= num_shards and stale.is_file() and not stale.is_symlink():
            stale.unlink()
    by_shard: dict[int, list[ManifestRow]] = {shard: [] for shard in range(num_shards)}
    for row in rows:
        by_shard.get(row.shard, []).append(row)
    for shard, shard_rows in by_shard.items():
        path = shard_slice_file(data_root, dataset, shard)
        write_manifest(shard_rows, path)
        out.append(path)
    return out
