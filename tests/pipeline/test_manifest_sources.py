"""Folder sources list what they do not take; manifests written before ``frame_fit`` still read."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from pipeline.failures import read_failures
from pipeline.manifest import COLUMNS, read_manifest
from stages.cli import main


def _params(tmp: Path, root: Path) -> Path:
    params = {
        "data": {"root": str(tmp / "data"), "manifests": str(tmp / "manifests"), "datasets": ["vids"], "shards": [0]},
        "dask": {"n_workers": 0},
        "manifest": {"datasets": {"vids": {"source": "folder", "root": str(root), "seconds": 2}}},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_files_not_taken_are_listed_with_their_reason(tmp_path, make_video, capsys):
    root = tmp_path / "videos"
    (root / "clip_dir.mp4").mkdir(parents=True)  # a folder named like a video
    (root / "clip_dir.mp4" / "inner.mp4").write_bytes(b"")
    make_video("good.mp4", seconds=2.2, folder=root)
    (root / "anim.gif").write_bytes(b"GIF89a")
    (root / "notes.txt").write_text("hello")
    (root / ".hidden.mp4").write_bytes(b"")
    (root / "gone.mp4").symlink_to(root / "missing.mp4")
    assert main(["manifest", "--params", str(_params(tmp_path, root)), "--dataset", "vids", "--no-progress"]) == 0
    assert [r.video_id for r in read_manifest(tmp_path / "manifests" / "vids.csv")] == ["good.mp4"]
    log = {f["video_id"]: f["reason"] for f in read_failures(tmp_path / "data" / "vids" / "manifest" / "failures.csv")}
    assert set(log) == {"clip_dir.mp4", "anim.gif", "notes.txt", ".hidden.mp4", "gone.mp4"}
    assert "'.gif' is not a video extension" in log["anim.gif"]
    assert "folder named like a video" in log["clip_dir.mp4"] and "broken" in log["gone.mp4"]
    assert "5 file(s) not taken" in capsys.readouterr().out


def test_folder_without_videos_exits_1(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    (root / "a.gif").write_bytes(b"GIF89a")
    assert main(["manifest", "--params", str(_params(tmp_path, root)), "--dataset", "vids", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vids" in err[0] and "no video found" in err[0]


def test_all_unreadable_names_the_common_reason(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (root / name).write_text("not a video\n" * 20)
    assert main(["manifest", "--params", str(_params(tmp_path, root)), "--dataset", "vids", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset vids" in err[0] and "(2 of 2)" in err[0] and len(err[0]) <= 300


def test_manifest_without_frame_fit_column_reads(tmp_path):
    path = tmp_path / "old.csv"
    old = [c for c in COLUMNS if c != "frame_fit"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old)
        writer.writeheader()
        writer.writerow(
            {c: "" for c in old}
            | {"video_id": "v", "split": "test", "task": "raw", "num_seconds": 5, "label_format": "none", "shard": 0}
        )
    assert read_manifest(path)[0].frame_fit == "stretch"
