"""The manifest's per-file caches (sha256s and ffmpeg probes, keyed on the file's stat) and the label
identity column: an unchanged file is neither read nor probed again, a changed one always is."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.manifest import (
    HashCache,
    ManifestError,
    ProbeCache,
    SourceParams,
    build_manifest,
    labels_identity,
    read_manifest,
    verify_source,
    write_manifest,
)
from tests.pipeline.test_release_trees import build_s4


@pytest.fixture()
def s4(tmp_path) -> tuple[SourceParams, Path]:
    """A 4-video S4 release tree and the cache folder beside it."""
    return SourceParams(source="avsbench_s4", root=str(build_s4(tmp_path / "tree"))), tmp_path / "cache"


def _build(cfg: SourceParams, cache: Path) -> dict:
    rows = build_manifest(cfg, 2, hash_cache=cache / "sha256.json", probe_cache=cache / "probe.json", progress=False)
    return {row.video_id: row for row in rows}


def _edit_probe_cache(cache: Path, change) -> None:
    data = json.loads((cache / "probe.json").read_text())
    change(data)
    (cache / "probe.json").write_text(json.dumps(data))


def _set_durations(data: dict, seconds: float) -> None:
    for entry in data["entries"].values():
        entry[4]["duration"] = seconds


def test_an_unchanged_file_is_not_probed_again_and_a_changed_one_is(s4):
    """A duration planted in the cache is what the next run reports (no ffmpeg ran); after the wav is
    rewritten with the same bytes (its ctime moves), ffmpeg's own 5 s is back."""
    cfg, cache = s4
    first = _build(cfg, cache)
    assert {row.duration for row in first.values()} == {"5.000"}
    entries = json.loads((cache / "probe.json").read_text())["entries"]
    assert sorted(entries) == sorted(str(Path(row.source_audio).resolve()) for row in first.values())
    _edit_probe_cache(cache, lambda data: _set_durations(data, 5.5))
    assert {row.duration for row in _build(cfg, cache).values()} == {"5.500"}

    wav = Path(next(iter(first.values())).source_audio)
    wav.write_bytes(wav.read_bytes())
    again = _build(cfg, cache)
    assert sorted(row.duration for row in again.values()) == ["5.000", "5.500", "5.500", "5.500"]


@pytest.mark.parametrize("key", ["ffmpeg", "parser"])
def test_probes_of_another_ffmpeg_or_banner_parser_are_dropped(s4, key):
    """Another ffmpeg binary, or another pipeline/media/probing.py (DVC reruns the manifest stage for it),
    may report other values: the cache's entries are then not used."""
    cfg, cache = s4
    _build(cfg, cache)

    def another_maker(data: dict) -> None:
        _set_durations(data, 5.5)
        data[key] = ["of another version"]

    _edit_probe_cache(cache, another_maker)
    assert {row.duration for row in _build(cfg, cache).values()} == {"5.000"}


@pytest.mark.parametrize("content", ["{broken", "[]", '{"format": 1, "entries": []}'])
def test_a_malformed_probe_cache_is_ignored_with_a_warning_naming_it(s4, content):
    cfg, cache = s4
    cache.mkdir()
    (cache / "probe.json").write_text(content)
    with pytest.warns(UserWarning, match="probe.json"):
        rows = _build(cfg, cache)
    assert {row.duration for row in rows.values()} == {"5.000"}
    assert len(json.loads((cache / "probe.json").read_text())["entries"]) == 4  # rewritten whole


def test_an_unreadable_file_is_not_cached(tmp_path):
    """A file ffmpeg refuses is probed (and reported) again on every run; the error names the file."""
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    probes = ProbeCache(tmp_path / "probe.json")
    for _ in range(2):
        with pytest.raises(Exception, match="noise.wav"):
            probes.probe(bad)
    assert probes.entries == {}


def test_labels_identity_changes_with_one_label_only(s4):
    cfg, cache = s4
    first = _build(cfg, cache)
    labelled = [row for row in first.values() if row.label_paths]
    assert len(labelled) == 4 and len({row.labels_sha256 for row in labelled}) == 4
    row = next(row for row in labelled if row.split == "train")  # frame 1 labelled only: "-" for the others
    label = Path(row.labels[0])
    Image.fromarray(255 - np.asarray(Image.open(label))).save(label)
    second = _build(cfg, cache)
    changed = [vid for vid in first if first[vid].labels_sha256 != second[vid].labels_sha256]
    assert changed == [row.video_id]
    assert all(first[vid].source_sha256 == second[vid].source_sha256 for vid in first)
    with pytest.raises(ManifestError, match="label images changed since the manifest was built"):
        verify_source(first[row.video_id], HashCache(None))
    verify_source(second[row.video_id], HashCache(None))


def test_a_deleted_label(s4):
    """The manifest's row then names a missing file (extracting it would fail); the next manifest lists
    that second as unlabelled, with another identity."""
    cfg, cache = s4
    row = next(r for r in _build(cfg, cache).values() if r.split == "test")
    Path(row.labels[2]).unlink()
    with pytest.raises(Exception, match=f"{Path(row.labels[2]).name}: label image missing"):
        labels_identity(row, HashCache(None))
    rebuilt = _build(cfg, cache)[row.video_id]
    assert rebuilt.labels[2] == "" and rebuilt.labels_sha256 != row.labels_sha256 and not rebuilt.probe_error


def test_a_manifest_written_before_labels_sha256_still_reads(s4, tmp_path):
    """Older manifests (no labels_sha256 column) read with an empty column; their sources are still verified."""
    cfg, cache = s4
    rows = list(_build(cfg, cache).values())
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    write_manifest(rows, new)
    with open(new, newline="") as src, open(old, "w", newline="") as dst:
        reader = csv.DictReader(src)
        columns = [c for c in reader.fieldnames if c != "labels_sha256"]
        writer = csv.DictWriter(dst, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(reader)
    read = read_manifest(old)
    assert [r.labels_sha256 for r in read] == [""] * 4
    assert [r.source_sha256 for r in read] == [r.source_sha256 for r in rows]
    for row in read:
        verify_source(row, HashCache(None))
    os.truncate(read[0].source_audio, 100)
    with pytest.raises(ManifestError, match="source changed"):
        verify_source(read[0], HashCache(None))
