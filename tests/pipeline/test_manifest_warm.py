"""The warm manifest rerun (every file unchanged, both caches known): it reruns on every added video, so
it works on path strings, resolves each folder once, fills cached rows without a thread pool and leaves
unchanged files on disk as they are. Each shortcut must answer exactly as the pathlib code it replaces:
the manifest's bytes, the cache keys and the checks are the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.manifest import HashCache, ManifestRow, SourceParams, read_manifest, write_manifest, write_shard_slices
from pipeline.manifest.files import manifest_bytes
from pipeline.manifest.hash_cache import NotCached
from pipeline.manifest.paths import FolderCheck, is_file, joined
from pipeline.manifest.sources import VIDEO_EXTENSIONS, list_rows
from tests.pipeline.test_release_trees import build_avss, build_ms3, build_s4

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def odd_files(tmp_path) -> Path:
    """A folder holding what a dataset may: files, folders, links to each, a broken link, a link loop."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.png").write_bytes(b"png")
    (tmp_path / "link_to_dir").symlink_to(tmp_path / "dir")
    (tmp_path / "link_to_file").symlink_to(tmp_path / "dir" / "f.png")
    (tmp_path / "link_to_link").symlink_to(tmp_path / "link_to_file")
    (tmp_path / "broken").symlink_to(tmp_path / "missing")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


NAMES = [
    "dir/f.png",
    "dir",
    "link_to_dir/f.png",
    "link_to_dir",
    "link_to_file",
    "link_to_link",
    "broken",
    "loop",
    "missing",
    "dir/f.png/under_a_file",
    "link_to_dir/../dir/f.png",
    "dir/./f.png",
    "dir//f.png",
]


@pytest.mark.parametrize("name", NAMES)
def test_is_file_answers_as_pathlib(odd_files, name):
    assert is_file(str(odd_files / name)) == Path(odd_files / name).is_file()
    assert is_file(f"{odd_files}/{name}") == Path(f"{odd_files}/{name}").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_a_hash_is_taken_exactly_where_pathlib_sees_a_file(odd_files, name):
    """``sha256_if_file`` answers None where ``Path.is_file()`` is False, with one stat for both."""
    cache = HashCache(None)
    digest = cache.sha256_if_file(str(odd_files / name))
    assert (digest is not None) == Path(odd_files / name).is_file()
    assert digest is None or digest == cache.sha256(odd_files / name)


def test_is_file_of_a_name_with_a_nul_byte_is_false_as_in_pathlib():
    assert is_file("a\0b") is False and Path("a\0b").is_file() is False
    assert HashCache(None).sha256_if_file("a\0b") is None


@pytest.mark.parametrize("folder", ["/data/s4", "/", ".", "rel/dir", "//net"])
@pytest.mark.parametrize("relative", ["a/b.png", "a//b.png", "a/./b.png", "a/", "./a", "../a", "a/../b", ".", "x"])
def test_joined_is_the_text_of_pathlib_join(folder, relative):
    assert joined(str(Path(folder)), relative) == str(Path(folder) / relative)


def test_folder_check_finds_the_first_extension_and_skips_missing_folders(tmp_path):
    (tmp_path / "v.avi").write_bytes(b"x")
    (tmp_path / "v.mkv").write_bytes(b"x")
    (tmp_path / "w.mp4").mkdir()  # a folder named like a video is not one
    folders = FolderCheck()
    assert folders.first_file(str(tmp_path / "v"), VIDEO_EXTENSIONS) == str(tmp_path / "v.avi")
    assert folders.first_file(str(tmp_path / "w"), VIDEO_EXTENSIONS) is None
    assert folders.first_file(str(tmp_path / "no" / "such" / "v"), VIDEO_EXTENSIONS) is None
    assert not folders.may_hold(str(tmp_path / "no" / "such" / "v"))


@pytest.mark.parametrize(
    "name", ["dir/f.png", "link_to_dir/f.png", "link_to_file", "link_to_link", "link_to_dir/../dir/f.png"]
)
def test_cache_keys_are_the_resolved_paths_and_stats_follow_links(odd_files, name, monkeypatch):
    """The key of every entry is ``str(Path(file).resolve())`` and its identity the stat of the file the
    path leads to, for absolute and relative paths, through linked folders and chains of links."""
    monkeypatch.chdir(odd_files)
    for path in (str(odd_files / name), name):
        cache = HashCache(None)
        digest = cache.sha256(path)
        (key, entry), *others = cache.entries.items()
        stat = Path(path).stat()
        assert not others and key == str(Path(path).resolve())
        assert entry == [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, digest]


def test_lookups_only_raises_for_unknown_or_changed_files_and_computes_nothing(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"one")
    cache = HashCache(tmp_path / "sha256.json")
    with cache.lookups_only(), pytest.raises(NotCached):
        cache.sha256(wav)
    assert cache.entries == {}
    digest = cache.sha256(wav)
    with cache.lookups_only():
        assert cache.sha256(wav) == digest
    wav.write_bytes(b"two")
    with cache.lookups_only(), pytest.raises(NotCached):
        cache.sha256(wav)
    assert cache.sha256(wav) != digest  # outside, a changed file is hashed again


@pytest.mark.parametrize(
    ("source", "build"),
    [("avsbench_s4", build_s4), ("avsbench_ms3", build_ms3), ("avsbench_semantic", build_avss)],
)
def test_rows_name_the_release_files_as_pathlib_does(tmp_path, source, build):
    """Every path of every row is the text pathlib gives for that release file; absent labels are ''."""
    rows = list_rows(SourceParams(source=source, root=str(build(tmp_path / "tree"))))
    assert rows
    for row in rows:
        for path in [*row.frame_paths, row.source_audio, *[p for p in row.labels if p]]:
            assert path == str(Path(path)) and Path(path).is_file(), path


# ---------------------------------------------------------------- what a warm rerun leaves on disk
def _params(tmp: Path, root: Path, shards: int) -> Path:
    params = {
        "data": {"root": "data", "manifests": "manifests", "datasets": ["ds"], "shards": list(range(shards))},
        "manifest": {"datasets": {"ds": {"source": "avsbench_s4", "root": str(root)}}},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _identities(tmp: Path) -> dict[str, tuple[int, int, bytes]]:
    """(inode, mtime_ns, bytes) of the manifest, its slices and the caches (the failures CSV, written by
    every run as every stage writes its own, is left out)."""
    files = [
        tmp / "manifests" / "ds.csv",
        *sorted((tmp / "data").glob("*/*/shard-*.csv")),
        *(tmp / "data" / "cache").glob("*"),
    ]
    return {str(p.relative_to(tmp)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def _avs(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's packages, not an installed copy
    code = "import sys; from stages.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_warm_rerun_rewrites_nothing_and_a_changed_wav_rewrites_its_slice_only(tmp_path):
    top = build_s4(tmp_path / "tree")
    params = _params(tmp_path, top, shards=3)
    argv = ("manifest", "--params", str(params), "--dataset", "ds", "--no-progress")
    assert _avs(*argv, cwd=tmp_path).returncode == 0
    first = _identities(tmp_path)
    assert len(first) == 1 + 3 + 2  # manifest, 3 slices, 2 caches

    assert _avs(*argv, cwd=tmp_path).returncode == 0
    assert _identities(tmp_path) == first  # same inodes, same times, same bytes

    row = read_manifest(tmp_path / "manifests" / "ds.csv")[0]
    wav = Path(row.source_audio)
    wav.write_bytes(wav.read_bytes()[:-2000])  # a shorter wav: new hash, new probe
    assert _avs(*argv, cwd=tmp_path).returncode == 0
    after = _identities(tmp_path)
    changed = sorted(name for name in first if first[name] != after[name])
    slice_of_row = f"data/ds/manifest/shard-{row.shard}.csv"
    assert changed == sorted(["manifests/ds.csv", slice_of_row, "data/cache/sha256.json", "data/cache/probe.json"])


def test_avs_manifest_imports_no_numpy_h5py_or_tqdm(tmp_path):
    """`avs manifest --no-progress` runs on every added video: numpy, h5py (the shards) and tqdm are not
    needed to list, hash, probe and write CSVs, and cost ~0.25 s of its start-up."""
    params = _params(tmp_path, build_s4(tmp_path / "tree"), shards=2)
    code = (
        "import sys; from stages.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in ('numpy', 'h5py', 'tqdm') if m in sys.modules)); sys.exit(code)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = ["manifest", "--params", str(params), "--dataset", "ds", "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_an_unchanged_slice_keeps_its_file_and_a_link_in_its_place_is_replaced(tmp_path):
    rows = [ManifestRow(video_id=f"cat/v{i}", split="test", task="s4", shard=i % 2) for i in range(4)]
    paths = write_shard_slices(rows, tmp_path, "ds", 2)
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths]
    rows[1].duration = "4.000"  # shard 1 only
    write_shard_slices(rows, tmp_path, "ds", 2)
    after = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths]
    assert after[0] == before[0] and after[1] != before[1]
    assert paths[1].read_bytes() == manifest_bytes([rows[1], rows[3]])

    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_bytes(paths[0].read_bytes())
    paths[0].unlink()
    paths[0].symlink_to(elsewhere)  # same bytes behind a link: the slice becomes a file of its own again
    assert write_manifest([rows[0], rows[2]], paths[0]) is True
    assert not paths[0].is_symlink() and elsewhere.read_bytes() == paths[0].read_bytes()


def test_manifest_bytes_are_the_dict_writer_csv(tmp_path):
    """The header and cells as csv.DictWriter wrote them from dataclasses.asdict (CRLF, quoting)."""
    import csv
    from dataclasses import asdict

    rows = [
        ManifestRow(video_id='cat/a "b", c', split="train", task="s4", num_seconds=7, probe_error="x\ny", shard=3),
        ManifestRow(video_id="v", split="test", task="raw", label_paths="a;;b"),
    ]
    reference = tmp_path / "reference.csv"
    with open(reference, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    assert manifest_bytes(rows) == reference.read_bytes()
