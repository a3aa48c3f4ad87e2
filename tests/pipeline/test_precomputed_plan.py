"""The plan of a COMBO maskige shard (``combo_maskiges@D``) names ~25,000 maskige files per AVSBench dataset
on every rerun, so it works on path strings and hashes manifest rows without ``dataclasses.asdict``. Each
shortcut must answer exactly as the pathlib / asdict code it stands for: the stored
``maskige_files_digest`` values (and so what a rerun reuses) must not change with it."""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path, PurePosixPath

import pytest
from test_precomputed import random_masks, write_combo_png

from pipeline.manifest import HashCache, ManifestRow
from pipeline.manifest.paths import is_plain_relative, joined, relative_name
from pipeline.proposals.precomputed import SUFFIX, maskige_files, maskige_files_digest, maskige_paths, row_record
from pipeline.shards import input_digest

# names a path may be built from: plain ones and every form pathlib rewrites (empty, ".", slashes, absolute)
NAMES = ["a", "x.png", "..", "", ".", "/", "//", "a/b", "a/", "/a", "./a", "a/.", "a//b", "a/./b"]
FOLDERS = [str(Path(f)) for f in ("/data/tree", "rel/tree", "/", "//net/tree", ".", "t/..", "/t//u")]


@pytest.mark.parametrize("folder", FOLDERS)
def test_joined_is_the_text_of_pathlib_join(folder):
    for count in (1, 2, 3):
        for names in itertools.product(NAMES, repeat=count):
            assert joined(folder, *names) == str(Path(folder, *names)), (folder, names)


@pytest.mark.parametrize("folder", FOLDERS)
def test_relative_name_answers_as_pathlib_relative_to(folder):
    files = [str(Path(folder, *names)) for names in itertools.product(NAMES, repeat=2)]
    files += ["/elsewhere/f.png", "rel/f.png", folder + "x/f.png"]  # not under the folder (a sibling's name)
    for file in files:
        try:
            expected = Path(file).relative_to(folder).as_posix()
        except ValueError:
            with pytest.raises(ValueError):
                relative_name(file, folder)
            continue
        assert relative_name(file, folder) == expected, (file, folder)


def test_is_plain_relative_is_whether_pathlib_keeps_the_text():
    for names in itertools.product(NAMES, repeat=2):
        text = "/".join(names)
        assert is_plain_relative(text) == (str(PurePosixPath(text)) == text and not text.startswith("/")), text


def _pathlib_paths(tree: Path, task: str, video_id: str, split: str, num_frames: int) -> list[Path]:
    """COMBO's registration layout, joined with pathlib (what the plan named before it used strings)."""
    parts = PurePosixPath(video_id).parts
    if task == "s4":
        category, name = parts
        return [tree / split / category / name / f"{name}_{k}{SUFFIX}" for k in range(1, num_frames + 1)]
    if task == "ms3":
        return [tree / video_id / f"{video_id}.mp4_{k}{SUFFIX}" for k in range(1, num_frames + 1)]
    label, uid = parts
    folder = tree / label / uid / "processed_frames"
    if not folder.is_dir() and (tree / label / uid / "frames").is_dir():
        folder = tree / label / uid / "frames"
    return [folder / f"{i}{SUFFIX}" for i in range(num_frames)]


IDS = {
    "s4": ["cat/video_1", "a b/c-d", "cat//v", "./cat/v", "cat/v/", "/abs/v", "a/b/c", "one", ".."],
    "ms3": ["vid_01", "a b", "a/b", "./v", "v/", "/v", "..", ""],
    "avss": ["v2/label/uid_1", "label/uid", "label//uid", "label/./uid", "/label", "x/y/z", "one"],
}


@pytest.mark.parametrize("task", sorted(IDS))
@pytest.mark.parametrize("split", ["train", "", "a/b", "."])
def test_maskige_files_and_their_digest_names_are_pathlibs(tmp_path, task, split):
    """Every id (odd ones included): the same files, and in the digest the same names relative to the tree
    (or the same ValueError, which leaves the video unreusable)."""
    tree = tmp_path / "tree"
    (tree / "label" / "uid" / "frames").mkdir(parents=True)  # an AVSS video in the mask_precess_ss form
    for video_id in IDS[task]:
        try:
            expected = _pathlib_paths(tree, task, video_id, split, 3)
        except ValueError:
            with pytest.raises(ValueError):
                maskige_files(str(tree), task, video_id, split, 3)
            continue
        files = maskige_files(str(tree), task, video_id, split, 3)
        assert files == [str(p) for p in expected] and maskige_paths(tree, task, video_id, split, 3) == expected
        for file, path in zip(files, expected, strict=True):
            try:
                name = path.relative_to(tree).as_posix()
            except ValueError:
                with pytest.raises(ValueError):
                    relative_name(file, str(tree))
                continue
            assert relative_name(file, str(tree)) == name


def _full_row() -> ManifestRow:
    """A row with every column set (no column left at its default)."""
    return ManifestRow(
        video_id="cat/v",
        split="train",
        task="s4",
        category="cat",
        source_video="v.mp4",
        source_frames="f1.png;f2.png",
        source_audio="a.wav",
        source_sha256="a" * 64,
        duration="5.0",
        fps="25",
        audio_channels="2",
        audio_rate="44100",
        num_seconds=5,
        label_paths="m1.png;",
        label_format="binary_png",
        shard=3,
        probe_error="none really",
        frame_fit="crop",
        labels_sha256="b" * 64,
    )


def test_row_record_is_asdict_of_the_row():
    """A new column of another type (a list, a nested dataclass) would make these differ: then the cheap
    record must change with it, or the stored digests would."""
    row = _full_row()
    assert row_record(row) == asdict(row) and list(row_record(row)) == list(asdict(row))
    assert input_digest(row_record(row)) == input_digest(asdict(row))
    assert row_record(ManifestRow("v", "test", "ms3")) == asdict(ManifestRow("v", "test", "ms3"))


def test_maskige_files_digest_takes_strings_or_paths_alike(tmp_path):
    tree = tmp_path / "tree"
    for k in (1, 2):
        write_combo_png(tree / "v" / f"v.mp4_{k}{SUFFIX}", random_masks(40, 40))
    hashes = HashCache(None)
    files = maskige_files(str(tree), "ms3", "v", "test", 2)
    by_strings = maskige_files_digest(files, str(tree), _full_row(), hashes)
    assert by_strings == maskige_files_digest([Path(f) for f in files], tree, _full_row(), hashes)
    assert by_strings != maskige_files_digest(files, str(tree), None, hashes)  # the row is part of it
    with pytest.raises(OSError):
        maskige_files_digest(maskige_files(str(tree), "ms3", "v", "test", 3), str(tree), None, hashes)
