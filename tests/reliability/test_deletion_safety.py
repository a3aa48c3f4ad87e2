"""Nothing outside a writer's own files is ever deleted: hostile demo stamps and a manifest folder
holding a user's files (issue 23, item 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline import demo
from pipeline.demo import DemoConfig, generate_demo
from pipeline.demo.layouts import ROOTS
from pipeline.manifest import ManifestRow, write_shard_slices

TREE = ROOTS["ms3"]
ONE_VIDEO = DemoConfig(
    seed=3, frame_size=(48, 64), num_classes=6, s4_videos=(1, 0, 0), ms3_videos=(1, 0, 0), avss_videos=(1, 0, 0)
)


@pytest.fixture
def demo_out(tmp_path) -> Path:
    out = tmp_path / "project" / "data" / "raw" / "demo"
    generate_demo(out, ONE_VIDEO, flavours=("ms3",), progress=False)
    return out


def _add_to_stamp(out: Path, entries: list[str]) -> None:
    path = out / TREE / demo.STAMP
    stamp = json.loads(path.read_text())
    stamp["files"] += entries
    path.write_text(json.dumps(stamp))


def test_stamp_entries_outside_the_tree_are_never_deleted(demo_out, tmp_path):
    """The probe: absolute paths and ``..`` added to the stamp were deleted (and their emptied folders)."""
    victims = {
        "absolute": tmp_path / "elsewhere" / "abs.txt",
        "dotdot": demo_out.parent / "victim" / "rel.txt",
        "sibling tree": demo_out / ROOTS["s4"] / "user.txt",
        "beside the trees": demo_out / "notes.txt",
    }
    for victim in victims.values():
        victim.parent.mkdir(parents=True, exist_ok=True)
        victim.write_text("a user's file")
    link = demo_out / TREE / "link_out"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    entries = [
        str(victims["absolute"]),
        f"{TREE}/../../victim/rel.txt",
        "../victim/rel.txt",
        f"{ROOTS['s4']}/user.txt",
        "notes.txt",
        f"{TREE}/link_out/abs.txt",  # a folder inside the tree that is a link out of it
    ]
    _add_to_stamp(demo_out, entries)
    with pytest.warns(UserWarning, match="not deleted"):
        generate_demo(demo_out, ONE_VIDEO, flavours=("ms3",), progress=False)
    for name, victim in victims.items():
        assert victim.read_text() == "a user's file", name


def test_stale_files_inside_the_tree_are_still_pruned(demo_out):
    """The generator's own stale files (relative, inside its tree) are removed, with emptied folders."""
    stale = demo_out / TREE / "old_run" / "deep" / "file.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    _add_to_stamp(demo_out, [stale.relative_to(demo_out).as_posix()])
    generate_demo(demo_out, ONE_VIDEO, flavours=("ms3",), progress=False)
    assert not stale.exists() and not (demo_out / TREE / "old_run").exists()
    assert (demo_out / TREE).is_dir()


@pytest.mark.parametrize("content", ["[]", '{"names": "x", "files": "/etc"}', "not json"])
def test_a_malformed_stamp_owns_nothing(demo_out, content):
    user = demo_out / TREE / "user.txt"
    user.write_text("mine")
    (demo_out / TREE / demo.STAMP).write_text(content)
    generate_demo(demo_out, ONE_VIDEO, flavours=("ms3",), progress=False)
    assert user.read_text() == "mine"
    assert json.loads((demo_out / TREE / demo.STAMP).read_text())["files"]


def _rows(n: int) -> list[ManifestRow]:
    return [ManifestRow(video_id=f"v{i}", split="test", task="raw", shard=i % 2) for i in range(n)]


def test_manifest_folder_keeps_files_it_did_not_write(tmp_path):
    """The probe: ``avs manifest`` deleted shard-5-backup.csv and failed on shard-abc.csv."""
    folder = tmp_path / "d" / "manifest"
    folder.mkdir(parents=True)
    theirs = ["shard-5-backup.csv", "shard-abc.csv", "shard-07.csv", "shard-9.csv.bak", "notes.txt"]
    for name in theirs:
        (folder / name).write_text("user data")
    (folder / "shard-4.csv").write_text("an old slice")  # ours, beyond the new shard count
    (folder / "shard-3.csv").symlink_to(tmp_path / "elsewhere.csv")
    (tmp_path / "elsewhere.csv").write_text("outside")
    written = write_shard_slices(_rows(4), tmp_path, "d", num_shards=2)
    assert sorted(p.name for p in written) == ["shard-0.csv", "shard-1.csv"]
    for name in theirs:
        assert (folder / name).read_text() == "user data", name
    assert not (folder / "shard-4.csv").exists()
    assert (tmp_path / "elsewhere.csv").read_text() == "outside" and os.path.islink(folder / "shard-3.csv")
