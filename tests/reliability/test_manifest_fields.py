"""Every manifest field is validated when the CSV is read (issue 23 item 4; probe family: hostile manifests).

Each case reproduces a probe that used to run (a 441 MB shard for ``num_seconds=100000`` on a 6 s clip,
``MemoryError: Unable to allocate 11.2 TiB`` for ``1000000000``, NaN frame rates, ...) and asserts it
now stops at read time with one line naming ``file:line.column``; sources that changed after the
manifest was written fail only their own video, with the reason in the failures file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from pipeline.extraction import VIDEO_BUDGET_BYTES, ExtractParams, extract_video
from pipeline.failures import read_failures
from pipeline.manifest import COLUMNS, ManifestError, ManifestRow, read_manifest
from pipeline.media import MediaError
from pipeline.shards import ShardReader
from stages.cli import main

GOOD = {
    "video_id": "v1",
    "split": "test",
    "task": "raw",
    "source_video": "videos/v1.mp4",
    "duration": "6.000",
    "fps": "25",
    "audio_channels": "1",
    "audio_rate": "16000",
    "num_seconds": "5",
    "shard": "0",
    "label_format": "none",
}


def write_rows(path: Path, *rows: dict, newline: str = "\n", bom: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator=newline)
        writer.writeheader()
        for row in rows:
            writer.writerow({**{c: "" for c in COLUMNS}, **row})
    return path


def one_line_error(path: Path, num_shards: int | None = None) -> str:
    with pytest.raises(ManifestError) as info:
        read_manifest(path, num_shards)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("fps", "nan", "fps: must be a finite number in (0, 1000], got 'nan'"),
        ("fps", "0", "fps: must be a finite number in (0, 1000]"),
        ("fps", "1e300", "fps: must be a finite number in (0, 1000], got '1e300'"),
        ("fps", "inf", "fps: must be a finite number"),
        ("audio_channels", "x", "audio_channels: must be an integer, got 'x'"),
        ("audio_channels", "0", "audio_channels: must be a finite number in [1, 64]"),
        ("duration", "-100", "duration: must be a finite number in [0, 604800], got '-100'"),
        ("audio_rate", "-1", "audio_rate: must be a finite number in [1, 768000], got '-1'"),
        ("num_seconds", "1000000000", "num_seconds must be <= 86400, got '1000000000'"),
        ("num_seconds", "100000", "num_seconds must be <= 86400, got '100000'"),
        ("num_seconds", "1000", "num_seconds: 1000 s for a source of 6.000 s (at most 16"),
        ("source_sha256", "abc", "source_sha256: must be 64 lowercase hex digits"),
        ("label_paths", "a.png;b.png", "label_paths: 2 entries for num_seconds 5"),
    ],
)
def test_bad_field_is_one_line_naming_file_line_and_column(tmp_path, field, value, expected):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": "v2", field: value})
    message = one_line_error(path)
    assert message.startswith(f"{path}:3.{field}") and expected in message, message


@pytest.mark.parametrize(
    "video_id,expected",
    [("a\nb", "holds a control character"), (".", "would escape"), ("a/./b", "would escape"), ("x\ty", "control")],
)
def test_ids_with_newlines_or_dot_parts_are_refused(tmp_path, video_id, expected):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": video_id})
    message = one_line_error(path)
    assert message.startswith(f"{path}:3.video_id") and expected in message, message


def test_shard_beyond_data_shards_is_refused(tmp_path):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": "v2", "shard": "7"})
    assert read_manifest(path)[1].shard == 7  # without data.shards nothing bounds it
    message = one_line_error(path, num_shards=2)
    assert message.startswith(f"{path}:3.shard") and "must be < 2" in message, message


def test_duplicate_ids_are_named_by_their_lines(tmp_path):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": "v2"}, GOOD)
    message = one_line_error(path)
    assert message == f"{path}:4.video_id: 'v1' repeats line 2", message


def test_duplicate_after_a_multi_line_cell_names_the_line_the_record_starts_on(tmp_path):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": "v2", "category": "two\nlines"}, GOOD)
    assert one_line_error(path) == f"{path}:5.video_id: 'v1' repeats line 2"


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = write_rows(tmp_path / "m.csv", GOOD, {**GOOD, "video_id": "v2"}, newline="\r\n", bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfvideo_id")
    rows = read_manifest(path)
    assert [r.video_id for r in rows] == ["v1", "v2"] and rows[1].label_format == "none"


def test_extra_cells_are_refused(tmp_path):
    path = write_rows(tmp_path / "m.csv", GOOD)
    path.write_text(path.read_text() + "v3" + ",x" * len(COLUMNS) + "\n")
    assert "cell(s) more than the header" in one_line_error(path)


def test_a_video_over_the_memory_budget_fails_before_allocating():
    row = ManifestRow(video_id="long", split="test", task="raw", source_video="missing.mp4", num_seconds=86400)
    cfg = ExtractParams(frame_size=[224, 224])
    with pytest.raises(MediaError, match=r"long: T=86400 s at 224x224 needs 18.7 GiB, over the 4 GiB"):
        extract_video(row, cfg)
    assert VIDEO_BUDGET_BYTES == 4 << 30


def _params(tmp: Path, root: Path) -> Path:
    params = {
        "data": {"root": str(tmp / "data"), "manifests": str(tmp / "manifests"), "datasets": ["vids"], "shards": [0]},
        "dask": {"n_workers": 0},
        "manifest": {"datasets": {"vids": {"source": "folder", "root": str(root), "seconds": 2}}},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _manifest_and_extract(tmp_path, make_video):
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(name, seconds=2.2, size=(32, 32), folder=root)
    params = _params(tmp_path, root)
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    return root, params, ["extract", "--params", str(params), "--dataset", "vids", "--shard", "0", "--no-progress"]


def test_a_source_changed_after_the_manifest_fails_only_its_video(tmp_path, make_video, capsys):
    root, params, extract = _manifest_and_extract(tmp_path, make_video)
    make_video("b.mp4", seconds=2.4, size=(32, 32), folder=root)  # replaced after the manifest was written
    assert main(extract) == 0
    shard = tmp_path / "data" / "vids" / "extract" / "shard-0.h5"
    with ShardReader(shard) as reader:
        assert reader.video_ids() == ["a.mp4"]
    failures = read_failures(shard.with_name("shard-0.failures.csv"))
    assert [f["video_id"] for f in failures] == ["b.mp4"]
    assert "source changed since the manifest was built" in failures[0]["reason"]


def test_a_hand_edited_num_seconds_stops_extract_before_any_work(tmp_path, make_video, capsys):
    _, _, extract = _manifest_and_extract(tmp_path, make_video)
    slice_path = tmp_path / "data" / "vids" / "manifest" / "shard-0.csv"
    text = slice_path.read_text()
    slice_path.write_text(text.replace(",2,,none,", ",1000,,none,", 1))
    capsys.readouterr()
    assert main(extract) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard-0.csv:2.num_seconds: 1000 s for a source of" in err[0], err
    assert not (tmp_path / "data" / "vids" / "extract" / "shard-0.h5").exists()
