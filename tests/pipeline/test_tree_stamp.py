"""The source-tree stamp (``pipeline/tree_stamp.py``, ``avs tree-stamp``): it changes with every change the
manifest could see, stays put otherwise, follows the manifest's link rule, and keeps the stamp of a tree
that is absent (a clone with pulled features and no raw data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tree_stamp import (
    FORMAT,
    NOT_READ_BY_SOURCE,
    TreeStamp,
    TreeStampError,
    read_stamp,
    stamp_tree,
    write_stamp,
)
from stages.cli import main

REPO = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> Path:
    """A small release-like tree: two videos' frames and a label, a wav, a meta CSV."""
    for name in ("a", "b"):
        frames = root / "s4_data" / "visual_frames" / "train" / "cat" / name
        frames.mkdir(parents=True)
        for k in (1, 2):
            (frames / f"{name}_{k}.png").write_bytes(f"{name} frame {k}".encode())
        (root / "s4_data" / "gt_masks" / name).mkdir(parents=True)
        (root / "s4_data" / "gt_masks" / name / f"{name}_1.png").write_bytes(b"label")
    (root / "s4_data" / "a.wav").write_bytes(b"RIFF....")
    (root / "s4_meta_data.csv").write_text("name,category,split\na,cat,train\nb,cat,train\n")
    return root


def _later(path: Path) -> None:
    """Give ``path`` a later mtime than it has, however coarse the file system's clock."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


LABEL = "s4_data/gt_masks/a/a_1.png"
CHANGES = {
    "content, same size": lambda t: (t / LABEL).write_bytes(b"LABEL"),
    "size": lambda t: (t / LABEL).write_bytes(b"a longer label"),
    "touch": lambda t: _later(t / LABEL),
    "rename": lambda t: (t / LABEL).rename(t / "s4_data/gt_masks/a/a_2.png"),
    "new file": lambda t: (t / "s4_data/gt_masks/a/a_3.png").write_bytes(b"label"),
    "removed file": lambda t: (t / LABEL).unlink(),
    "new folder with a file": lambda t: (t / "s4_data/raw_videos").mkdir() or (t / "s4_data/raw_videos/a.mp4").touch(),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_the_manifest_could_see_changes_the_digest(tmp_path, change):
    tree = _tree(tmp_path / "tree")
    before = stamp_tree(tree)
    CHANGES[change](tree)
    after = stamp_tree(tree)
    assert after.digest != before.digest


def test_the_same_tree_gives_the_same_stamp(tmp_path):
    tree = _tree(tmp_path / "tree")
    first = stamp_tree(tree)
    (tree / LABEL).read_bytes()  # reading changes no stamped field
    os.utime(tree / "s4_data")  # nor do a folder's own times: only files count
    again = stamp_tree(str(tree))
    assert again == first
    assert first.files == 8 and first.bytes == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert len(first.digest) == 64 and first.format == FORMAT


def test_a_file_replaced_with_the_same_size_and_mtime_changes_the_digest(tmp_path):
    """ctime and inode catch what size and mtime miss (a copy with ``cp -p``, a restore from a backup)."""
    tree = _tree(tmp_path / "tree")
    label = tree / LABEL
    old = label.stat()
    before = stamp_tree(tree)
    replacement = tmp_path / "replacement.png"
    replacement.write_bytes(b"LABEL")
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(replacement, label)
    assert (label.stat().st_size, label.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert stamp_tree(tree).digest != before.digest


def test_hidden_entries_are_not_stamped(tmp_path):
    """The manifest reads no hidden file; writers keep their temporaries under hidden names."""
    tree = _tree(tmp_path / "tree")
    before = stamp_tree(tree)
    (tree / ".a.png.tmp-0123456789abcdef").write_bytes(b"half written")
    (tree / ".cache").mkdir()
    (tree / ".cache" / "x").write_bytes(b"x")
    assert stamp_tree(tree) == before


def test_links_follow_the_manifest_rule(tmp_path):
    """A link to a file inside the root is stamped under its name with its target's stat; a link to a file
    outside the root and links to folders are not (docs/data.md)."""
    tree = _tree(tmp_path / "tree")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"outside")
    before = stamp_tree(tree)
    (tree / "out.png").symlink_to(outside / "x.png")
    (tree / "folder_in").symlink_to(tree / "s4_data", target_is_directory=True)
    (tree / "folder_out").symlink_to(outside, target_is_directory=True)
    (tree / "broken.png").symlink_to(tmp_path / "nowhere.png")
    assert stamp_tree(tree) == before
    (tree / "in.png").symlink_to(tree / LABEL)
    linked = stamp_tree(tree)
    assert linked.files == before.files + 1 and linked.digest != before.digest
    _later(tree / LABEL)  # the link's target changes: both names' entries change
    assert stamp_tree(tree).digest != linked.digest


def test_a_missing_or_plain_file_tree_is_one_line_error(tmp_path):
    with pytest.raises(TreeStampError, match=r"nowhere: not a folder"):
        stamp_tree(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TreeStampError, match=r"file: not a folder"):
        stamp_tree(tmp_path / "file")


def test_the_stamp_file_is_rewritten_only_when_it_changes(tmp_path):
    tree = _tree(tmp_path / "tree")
    out = tmp_path / "stamps" / "source_tree.json"
    assert write_stamp(stamp_tree(tree), out) is True
    mtime = out.stat().st_mtime_ns
    assert write_stamp(stamp_tree(tree), out) is False and out.stat().st_mtime_ns == mtime
    stored = json.loads(out.read_text())
    assert stored == {"tree": str(tree), "files": 8, "bytes": stored["bytes"], "digest": stored["digest"], "format": 1}
    assert read_stamp(out) == stamp_tree(tree)
    (tree / "s4_data" / "b.wav").write_bytes(b"RIFF")
    assert write_stamp(stamp_tree(tree), out) is True and read_stamp(out).files == 9
    assert not [p.name for p in out.parent.iterdir() if p.name != out.name]  # no temporary left


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not a readable tree stamp"),
        ("[]", "not a tree stamp"),
        ('{"tree": "t", "files": -1, "bytes": 0, "digest": "' + "0" * 64 + '", "format": 1}', "'files'"),
        ('{"tree": "t", "files": 1, "bytes": 0, "digest": "xyz", "format": 1}', "digest"),
        ('{"tree": "t", "files": 1, "bytes": 0, "digest": "' + "0" * 64 + '", "format": 99}', "format 99"),
    ],
)
def test_a_malformed_stamp_file_is_refused(tmp_path, text, reason):
    out = tmp_path / "source_tree.json"
    out.write_text(text)
    with pytest.raises(TreeStampError, match=reason) as caught:
        read_stamp(out)
    assert str(out) in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- avs tree-stamp
def test_command_writes_then_keeps_the_stamp(tmp_path, capsys):
    tree = _tree(tmp_path / "tree")
    out = tmp_path / "source_tree.json"
    assert main(["tree-stamp", "--tree", str(tree), "--out", str(out)]) == 0
    assert "8 files" in capsys.readouterr().out and read_stamp(out) == stamp_tree(tree)
    assert main(["tree-stamp", "--tree", str(tree), "--out", str(out)]) == 0
    assert "(unchanged)" in capsys.readouterr().out


def test_an_absent_tree_keeps_its_stamp(tmp_path, capsys):
    """A teammate who pulled the features has the stamp and no raw tree: the stamp stays byte for byte."""
    tree = _tree(tmp_path / "tree")
    out = tmp_path / "source_tree.json"
    assert main(["tree-stamp", "--tree", str(tree), "--out", str(out)]) == 0
    text, mtime = out.read_text(), out.stat().st_mtime_ns
    (tmp_path / "tree").rename(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["tree-stamp", "--tree", str(tree), "--out", str(out)]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and "is absent" in said[0] and "kept" in said[0]
    assert out.read_text() == text and out.stat().st_mtime_ns == mtime


def _avs(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's packages
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_an_absent_tree_without_stamp_is_one_line_exit_2(tmp_path):
    done = _avs("tree-stamp", "--tree", "raw/s4", "--out", "data/s4/source_tree.json", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avs tree-stamp: error: raw/s4: tree not found"), lines
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [("garbage", "not a readable tree stamp"), ("other tree", "stamp of tree other/tree, not of raw/s4")],
)
def test_an_absent_tree_with_a_bad_stamp_is_one_line_exit_2(tmp_path, stamp, reason):
    out = tmp_path / "source_tree.json"
    if stamp == "garbage":
        out.write_text("garbage")
    else:
        write_stamp(TreeStamp(tree="other/tree", files=0, bytes=0, digest="0" * 64), out)
    done = _avs("tree-stamp", "--tree", "raw/s4", "--out", str(out), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and reason in lines[0], lines


def test_the_command_imports_no_heavy_library(tmp_path):
    """Run on every `dvc repro`: its start-up must stay a plain interpreter's and the params check's (pydantic),
    no torch, dask, h5py or numpy."""
    _tree(tmp_path / "tree")
    _params(tmp_path, {"s4": {"source": "avsbench_s4", "root": "tree"}})
    code = (
        "import sys; from stages.cli import main; "
        "code = main(['tree-stamp', '--out-dir', 'data/stamps']); "
        "print(sorted(m for m in ('torch', 'dask', 'h5py', 'numpy') if m in sys.modules), code)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[] 0", done.stdout + done.stderr


# ---------------------------------------------------------------- avs tree-stamp --out-dir (stamps/dvc.yaml:trees)
def _params(root: Path, datasets: dict, maskige_trees: dict | None = None) -> None:
    sections = {"manifest": {"datasets": datasets}, "proposals": {"maskige_trees": maskige_trees or {}}}
    (root / "params.yaml").write_text(json.dumps(sections))  # JSON is YAML


def test_out_dir_stamps_every_named_tree_and_rewrites_only_a_changed_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path / "s4")
    _tree(tmp_path / "ms3")
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a_1.png").write_bytes(b"maskige")
    datasets = {
        "s4": {"source": "avsbench_s4", "root": "s4", "train_fit": "crop"},
        "ms3": {"source": "folder", "root": "ms3"},
    }
    _params(tmp_path, datasets, {"s4": "masks"})
    assert main(["tree-stamp", "--out-dir", "data/stamps"]) == 0
    stamps = {
        path.relative_to(tmp_path / "data/stamps").as_posix() for path in (tmp_path / "data/stamps").rglob("*.json")
    }
    assert stamps == {"s4/source_tree.json", "ms3/source_tree.json", "s4/maskige_tree.json"}
    assert read_stamp("data/stamps/s4/source_tree.json") == stamp_tree("s4", NOT_READ_BY_SOURCE["avsbench_s4"])
    assert read_stamp("data/stamps/s4/maskige_tree.json") == stamp_tree("masks")
    times = {name: (tmp_path / "data/stamps" / name).stat().st_mtime_ns for name in stamps}
    (tmp_path / "ms3" / LABEL).write_bytes(b"LABEL")
    capsys.readouterr()
    assert main(["tree-stamp", "--out-dir", "data/stamps"]) == 0
    said = capsys.readouterr().out
    assert said.count("(written)") == 1 and said.count("(unchanged)") == 2 and "ms3/source_tree.json" in said
    unchanged = {name for name in stamps if (tmp_path / "data/stamps" / name).stat().st_mtime_ns == times[name]}
    assert unchanged == {"s4/source_tree.json", "s4/maskige_tree.json"}


def test_out_dir_removes_the_stamps_of_trees_no_longer_named(tmp_path, monkeypatch):
    """Only its own files: a stamp of a tree params.yaml dropped goes, anything else in the folder stays."""
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path / "s4")
    (tmp_path / "masks").mkdir()
    _params(
        tmp_path,
        {"s4": {"source": "avsbench_s4", "root": "s4"}, "x": {"source": "folder", "root": "s4"}},
        {"s4": "masks"},
    )
    assert main(["tree-stamp", "--out-dir", "data/stamps"]) == 0
    (tmp_path / "data/stamps/x/notes.txt").write_text("user file")
    _params(tmp_path, {"s4": {"source": "avsbench_s4", "root": "s4"}, "x": {"source": "folder", "root": "s4"}})
    assert main(["tree-stamp", "--out-dir", "data/stamps"]) == 0
    assert not (tmp_path / "data/stamps/s4/maskige_tree.json").exists()
    assert (tmp_path / "data/stamps/s4/source_tree.json").is_file()
    _params(tmp_path, {"s4": {"source": "avsbench_s4", "root": "s4"}})
    assert main(["tree-stamp", "--out-dir", "data/stamps"]) == 0
    assert sorted(p.name for p in (tmp_path / "data/stamps/x").iterdir()) == ["notes.txt"]


def test_out_dir_keeps_an_absent_trees_stamp_and_stamps_the_rest_when_one_fails(tmp_path):
    """A pulled clone without one raw tree keeps that stamp; a tree with neither tree nor stamp is one line on
    stderr naming its dataset, the other trees are still stamped, and the exit code is 1."""
    _tree(tmp_path / "s4")
    _tree(tmp_path / "ms3")
    datasets = {"s4": {"source": "avsbench_s4", "root": "s4"}, "ms3": {"source": "avsbench_ms3", "root": "ms3"}}
    _params(tmp_path, datasets)
    assert _avs("tree-stamp", "--out-dir", "data/stamps", cwd=tmp_path).returncode == 0
    kept = (tmp_path / "data/stamps/ms3/source_tree.json").read_bytes()
    (tmp_path / "ms3").rename(tmp_path / "moved")
    done = _avs("tree-stamp", "--out-dir", "data/stamps", cwd=tmp_path)
    assert done.returncode == 0 and "ms3 is absent" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "data/stamps/ms3/source_tree.json").read_bytes() == kept
    _params(tmp_path, {**datasets, "avss": {"source": "avsbench_semantic", "root": "nowhere"}})
    (tmp_path / "s4" / LABEL).write_bytes(b"LABEL")
    done = _avs("tree-stamp", "--out-dir", "data/stamps", cwd=tmp_path)
    errors = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert errors[0].startswith("avs tree-stamp: error: avss (source tree): nowhere: tree not found"), errors
    assert "data/stamps/s4/source_tree.json" in done.stdout and "(written)" in done.stdout


def test_out_dir_with_no_tree_named_is_an_empty_folder(tmp_path, monkeypatch):
    """The stage's DVC output is the folder: it must exist even when params.yaml names no dataset."""
    monkeypatch.chdir(tmp_path)
    _params(tmp_path, {})
    assert main(["tree-stamp", "--out-dir", "data/stamps"]) == 0
    assert (tmp_path / "data/stamps").is_dir() and not any((tmp_path / "data/stamps").iterdir())


@pytest.mark.parametrize(
    ("datasets", "reason"),
    [
        ({"s4": {"source": "nope", "root": "s4"}}, "manifest.datasets.s4"),
        ({"s4": {"source": "avsbench_s4"}}, "manifest.datasets.s4"),
        ({"s4": ["avsbench_s4"]}, "manifest.datasets.s4 must be a mapping"),
        ({"bad name!": {"source": "avsbench_s4", "root": "s4"}}, "manifest.datasets.bad name!"),
    ],
)
def test_out_dir_bad_params_are_one_line_exit_2(tmp_path, datasets, reason):
    _params(tmp_path, datasets)
    done = _avs("tree-stamp", "--out-dir", "data/stamps", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and reason in lines[0], lines
    assert not (tmp_path / "data").exists()


def test_folders_the_source_never_reads_are_not_stamped(tmp_path, capsys):
    """COMBO's maskiges inside a release tree have their own stamp (data/stamps/D/maskige_tree.json): an AVSBench
    source's stamp does not walk them, at any depth, so editing one reruns no manifest; a folder source's stamp
    still does."""
    tree = _tree(tmp_path / "tree")
    maskige = tree / "s4_data" / "pre_SAM_mask" / "train" / "cat" / "a" / "a_1_mask_color.png"
    maskige.parent.mkdir(parents=True)
    maskige.write_bytes(b"maskige")
    skip = NOT_READ_BY_SOURCE["avsbench_s4"]
    before, whole = stamp_tree(tree, skip), stamp_tree(tree)
    assert before.files == 8 and whole.files == 9
    maskige.write_bytes(b"MASKIGE")
    assert stamp_tree(tree, skip) == before and stamp_tree(tree) != whole
    (tree / LABEL).write_bytes(b"LABEL")
    assert stamp_tree(tree, skip).digest != before.digest
    out = tmp_path / "source_tree.json"
    assert main(["tree-stamp", "--tree", str(tree), "--source", "avsbench_s4", "--out", str(out)]) == 0
    assert "8 files" in capsys.readouterr().out
    assert not NOT_READ_BY_SOURCE["folder"]


def test_the_avsbench_readers_read_nothing_the_stamp_skips(tmp_path):
    """What the stamp leaves out must be what the manifest never reads: every path of every row built from
    generated release trees (benchmarks/avsbench_full.py, with COMBO's maskige trees inside) avoids them."""
    from pipeline.manifest import SourceParams, build_manifest
    from pipeline.manifest.sources import SOURCES

    assert set(NOT_READ_BY_SOURCE) == set(SOURCES)  # --source takes every source, and only those

    script = REPO / "benchmarks" / "avsbench_full.py"
    out = tmp_path / "raw"
    subprocess.run([sys.executable, str(script), "--out", str(out), "--fraction", "0.001"], check=True, cwd=REPO)
    roots = {"avsbench_s4": "Single-source", "avsbench_ms3": "Multi-sources", "avsbench_semantic": "AVSBench_semantic"}
    for source, root in roots.items():
        assert any(p.name in NOT_READ_BY_SOURCE[source] for p in (out / root).rglob("*") if p.is_dir())
        rows = build_manifest(SourceParams(source=source, root=str(out / root)), num_shards=1, progress=False)
        paths = [str(value) for row in rows for value in vars(row).values()]
        assert rows and not [p for p in paths if any(f"/{name}/" in p for name in NOT_READ_BY_SOURCE[source])]
