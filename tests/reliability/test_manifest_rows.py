"""Manifest rows are validated when read: each bad field is one line naming the CSV file, line and column;
URLs and protocol prefixes never reach ffmpeg (probe family: hostile manifests)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.manifest import COLUMNS, ManifestError, read_manifest
from stages.cli import main

GOOD = {
    "video_id": "v1",
    "split": "test",
    "task": "raw",
    "source_video": "videos/v1.mp4",
    "num_seconds": "5",
    "shard": "0",
    "label_format": "none",
}


def write_rows(path: Path, *rows: dict) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**{c: "" for c in COLUMNS}, **row})
    return path


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("source_video", "http://127.0.0.1:8000/x.mp4", "source_video: http://127.0.0.1:8000/x.mp4: is a URL"),
        ("source_video", "concat:a.mp4|b.mp4", "has a protocol prefix (concat:)"),
        ("source_frames", "f1.png;pipe:x.png", "has a protocol prefix (pipe:)"),
        ("num_seconds", "0", "num_seconds must be >= 1 for a readable video, got 0"),
        ("num_seconds", "-3", "num_seconds must be >= 0, got '-3'"),
        ("num_seconds", "five", "num_seconds"),
        ("shard", "-1", "shard must be >= 0"),
        ("split", "training", "split"),
        ("label_format", "jpeg", "label_format"),
        ("video_id", "../../etc/passwd", "video id"),
    ],
)
def test_bad_field_names_file_line_and_column(tmp_path, field, value, expected):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": "v2", field: value})
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3") and expected in message and "\n" not in message, message


def test_binary_manifest_names_the_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ManifestError, match=r"m\.csv: not a UTF-8 text CSV"):
        read_manifest(path)


def test_extract_on_a_manifest_with_a_url_row_exits_2_and_fetches_nothing(tmp_path, capsys):
    path = write_rows(tmp_path / "m.csv", {**GOOD, "source_video": "https://example.invalid/x.mp4"})
    params = tmp_path / "params.yaml"
    params.write_text("data: {root: data}\ndask: {n_workers: 0}\n")
    code = main(
        ["extract", "--params", str(params), "--manifest", str(path), "--out", str(tmp_path / "x.h5"), "--no-progress"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "m.csv:2" in err[0] and "is a URL" in err[0]
    assert not (tmp_path / "x.h5").exists()
