"""The warm manifest rerun's shortcuts of the one-video-added case: one ``lstat`` per file per run shared by
the listing and both caches (:class:`pipeline.manifest.paths.StatOnce`), and CSV lines joined without the
csv module when it would quote nothing. Each must answer exactly as the code it spares: pathlib's
``is_file``, the unshared cache's digests and keys, ``csv.writer``'s bytes; and a file added, changed or
removed between two runs is still seen."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.manifest import HashCache, ManifestRow, SourceParams, build_manifest, read_manifest, write_manifest
from pipeline.manifest.files import COLUMNS, _csv_line, manifest_bytes
from pipeline.manifest.paths import FolderCheck, StatOnce
from tests.pipeline.test_manifest_warm import NAMES, odd_files  # noqa: F401 - odd_files is a fixture
from tests.pipeline.test_release_trees import build_s4


@pytest.mark.parametrize("name", NAMES)
def test_stat_once_is_file_answers_as_pathlib(odd_files, name):  # noqa: F811
    stats = StatOnce()
    path = str(odd_files / name)
    assert stats.is_file(path) == Path(path).is_file()
    assert stats.is_file(path) == Path(path).is_file()  # the remembered stat answers the same
    assert FolderCheck(stats).is_file(path) == Path(path).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_a_cache_sharing_stats_gives_the_digests_and_keys_of_one_that_does_not(odd_files, name):  # noqa: F811
    shared, alone = HashCache(None, StatOnce().lstat), HashCache(None)
    path = str(odd_files / name)
    assert shared.sha256_if_file(path) == alone.sha256_if_file(path)
    assert shared.is_file(path) == Path(path).is_file()
    assert shared.entries == alone.entries


def test_stat_once_stats_each_file_once_and_asks_again_for_a_missing_one(tmp_path):
    present, missing = tmp_path / "a.png", tmp_path / "b.png"
    present.write_bytes(b"a")
    stats = StatOnce()
    first = stats.lstat(str(present))
    present.write_bytes(b"changed")  # within one run the first stat stands (taken before any read)
    assert stats.lstat(str(present)) is first
    assert not stats.is_file(str(missing))
    missing.write_bytes(b"b")
    assert stats.is_file(str(missing))


def _rows(cfg: SourceParams, cache: Path) -> dict[str, ManifestRow]:
    built = build_manifest(cfg, 2, hash_cache=cache / "sha256.json", probe_cache=cache / "probe.json", progress=False)
    return {row.video_id: row for row in built}


@pytest.fixture()
def s4(tmp_path) -> tuple[SourceParams, Path]:
    return SourceParams(source="avsbench_s4", root=str(build_s4(tmp_path / "tree"))), tmp_path / "cache"


def test_a_label_added_a_frame_touched_and_a_frame_relinked_are_seen(s4):
    """Between two runs: a train video gains a second label; a frame is rewritten with other bytes of the
    same size and its times put back (only its ctime moves); another frame becomes a link to a different
    image. Each row that changed gets new hashes; the others keep theirs."""
    cfg, cache = s4
    first = _rows(cfg, cache)
    train = next(row for row in first.values() if row.split == "train")
    second_label = Path(train.labels[0]).with_name(Path(train.labels[0]).name.replace("_1.png", "_2.png"))
    shutil.copyfile(train.labels[0], second_label)
    others = [row for row in first.values() if row.video_id != train.video_id]
    touched = Path(others[0].frame_paths[2])
    times = os.stat(touched)
    pixels = np.asarray(Image.open(touched)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(touched)
    assert os.stat(touched).st_size == times.st_size  # the same size: only the content and the ctime differ
    os.utime(touched, ns=(times.st_atime_ns, times.st_mtime_ns))
    relinked = Path(others[1].frame_paths[0])
    relinked.unlink()
    relinked.symlink_to(others[1].frame_paths[1])

    second = _rows(cfg, cache)
    assert second[train.video_id].labels[1] == str(second_label)
    assert second[train.video_id].labels_sha256 != train.labels_sha256
    assert second[others[0].video_id].source_sha256 != others[0].source_sha256
    assert second[others[1].video_id].source_sha256 != others[1].source_sha256
    unchanged = [row.video_id for row in others[2:]]
    assert all(second[vid] == first[vid] for vid in unchanged)
    assert _rows(cfg, cache.with_name("cold")) == second  # as a run without caches sees them


HOSTILE_CELLS = ["plain", "", "a,b", 'say "hi"', "line\nbreak", "carriage\rreturn", "crlf\r\n", " lead", "tail ",
                 "tab\there", "ünïcødé ✓", "semi;colon", "\x00nul", "'single'", "=formula", "\x1fsep"]  # fmt: skip


@pytest.mark.parametrize("cell", HOSTILE_CELLS)
def test_a_csv_line_is_what_csv_writer_writes(cell):
    for cells in [(cell, 5, "x"), ("x", cell), (cell,), (), (cell, None, 1.5, True), (7, cell, 0)]:
        text = io.StringIO(newline="")
        csv.writer(text).writerow(cells)
        assert _csv_line(cells) == text.getvalue(), cells


def test_manifest_bytes_are_csv_writer_bytes_and_read_back(tmp_path):
    rows = [
        ManifestRow(video_id="cat/a", split="train", task="s4", category="cat", source_audio="/d/a.wav", shard=3),
        ManifestRow(video_id="b", split="test", task="raw", source_video="/d/b, with comma.mp4", probe_error='"x"\n'),
    ]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    writer.writerows([[getattr(row, column) for column in COLUMNS] for row in rows])
    assert manifest_bytes(rows) == text.getvalue().encode("utf-8")
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == rows
