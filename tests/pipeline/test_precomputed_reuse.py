"""Reruns of ``avs proposals --all-shards`` on a COMBO maskige tree (``combo_maskiges@D``): a video is
copied from the previous shard when its frames (``source_digest``) and its maskige PNGs
(``maskige_files_digest``) are unchanged and its arrays are stored as written (``stored_digest``); a shard whose
every video is unchanged is not rewritten at all. Whatever is reused, the result equals a from-scratch run.

The tree is a small MS3-like release (6 videos, two shards: m_000, m_001 in shard 1, the rest in shard 0)
with COMBO's maskiges written as its scripts write them (:mod:`test_precomputed`)."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from test_precomputed import many_masks, random_masks, write_combo_png
from test_release_trees import _binary_mask, _csv, _frame, _png, _wav
from test_shard_reuse import assert_same_shards

from pipeline.failures import read_failures
from pipeline.hashing import sha256_of_file
from pipeline.manifest import HashCache
from pipeline.proposals.precomputed import MASKIGE_FILES_DIGEST
from pipeline.shards import (
    CONTENT_DIGEST,
    SHAPES,
    SOURCE_DIGEST,
    STORED_DIGEST,
    PreviousShard,
    ShardReader,
    ShardWriter,
    digest_file,
    failures_file,
    file_digest_mismatch,
    record_file_digest,
)
from stages.cli import main

VIDEOS = [f"m_{i:03d}" for i in range(6)]
SHARD_OF = {"m_000": 1, "m_001": 1}  # the others: shard 0 (sha256 of the id mod 2)


def _build(root: Path) -> tuple[Path, Path]:
    """An MS3 release tree (frames, masks, wavs) and its COMBO maskige tree; m_002's second frame shows
    labels beyond the palette (a warning that reuse must carry over)."""
    top, data = root / "release" / "Multi-sources", root / "release" / "Multi-sources" / "ms3_data"
    _csv(top / "ms3_meta_data.csv", ["video_id", "split"], [[v, "test"] for v in VIDEOS])
    tree = root / "combo" / "ms3_data" / "pre_SAM_mask"
    for vid in VIDEOS:
        for k in range(1, 6):
            _png(data / "visual_frames" / vid / f"{vid}.mp4_{k}.png", _frame())
            _png(data / "gt_masks" / "test" / vid / f"{vid}_{k}.png", _binary_mask())
            masks = many_masks(40, 40) if (vid, k) == ("m_002", 2) else random_masks(40, 40)
            write_combo_png(tree / vid / f"{vid}.mp4_{k}_mask_color.png", masks)
        _wav(data / "audio_wav" / "test" / f"{vid}.wav", 5.0)
    return top, tree


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Release + tree + manifest + extract shards (frames 32x32), built once and copied by each test."""
    root = tmp_path_factory.mktemp("maskige_reuse")
    top, tree = _build(root)
    params = {
        "data": {"root": "data", "manifests": "manifests", "datasets": ["ms3"], "shards": [0, 1]},
        "dask": {"n_workers": 0},
        "manifest": {"datasets": {"ms3": {"source": "avsbench_ms3", "root": str(top.relative_to(root))}}},
        "extract": {"frame_size": [32, 32]},
        "proposals": {"datasets": [], "maskige_trees": {"ms3": str(tree.relative_to(root))}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with contextlib.chdir(root):  # params.yaml names its paths relative to the project: copies work alike
        assert _avs("manifest") == 0
        for shard in ("0", "1"):
            assert _avs("extract", "--shard", shard) == 0
    return root


def _avs(command: str, *extra: str) -> int:
    return main([command, "--params", "params.yaml", "--dataset", "ms3", "--no-progress", *extra])


@pytest.fixture
def work(pristine, tmp_path, monkeypatch) -> Path:
    """A copy of the pristine project with the proposals of a first run, as the working directory."""
    shutil.copytree(pristine, tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    assert _avs("proposals", "--all-shards") == 0
    return tmp_path / "p"


def _shard(shard: int) -> Path:
    return Path("data") / "ms3" / "proposals" / f"shard-{shard}.h5"


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def _png_of(video: str, k: int) -> Path:
    return Path("combo") / "ms3_data" / "pre_SAM_mask" / video / f"{video}.mp4_{k}_mask_color.png"


def _rerun(capsys) -> str:
    capsys.readouterr()
    assert _avs("proposals", "--all-shards") == 0
    return capsys.readouterr().out


def _equals_from_scratch(tmp: Path) -> None:
    """Both shards and failures files equal what ``--no-reuse`` writes in their place."""
    for shard in (0, 1):
        saved = tmp / f"rerun-{shard}"
        saved.mkdir()
        shutil.copy2(_shard(shard), saved / "shard.h5")
        shutil.copy2(failures_file(_shard(shard)), saved / "shard.failures.csv")
    assert _avs("proposals", "--all-shards", "--no-reuse") == 0
    for shard in (0, 1):
        assert_same_shards(tmp / f"rerun-{shard}" / "shard.h5", _shard(shard))
        assert read_failures(tmp / f"rerun-{shard}" / "shard.failures.csv") == read_failures(
            failures_file(_shard(shard))
        )


def test_a_rerun_with_nothing_changed_writes_no_shard(work, tmp_path, capsys):
    stamps = {shard: _stamp(_shard(shard)) for shard in (0, 1)}
    out = _rerun(capsys)
    assert out.count("videos unchanged; previous shard kept as is") == 2, out
    assert {shard: _stamp(_shard(shard)) for shard in (0, 1)} == stamps  # the very same files
    warned = read_failures(failures_file(_shard(0)))
    assert [row["video_id"] for row in warned] == ["m_002"] and "beyond the 150-row palette" in warned[0]["reason"]
    cache = json.loads((work / "data" / "cache" / "maskiges-ms3.sha256.json").read_text())
    assert len(cache["entries"]) == 5 * len(VIDEOS)  # every PNG hashed once, by stat
    _equals_from_scratch(tmp_path)


def test_one_edited_png_recomputes_only_its_video(work, tmp_path, capsys):
    untouched = _stamp(_shard(1))
    with ShardReader(_shard(0)) as reader:
        before = reader.read("m_003", "maskige", 3)
    write_combo_png(_png_of("m_003", 4), random_masks(40, 40, k=7))
    out = _rerun(capsys)
    assert "proposals shard-0.h5: 3 of 4 videos reused from the previous shard" in out, out
    assert "shard-1.h5: all 2 videos unchanged; previous shard kept as is" in out
    assert _stamp(_shard(1)) == untouched
    with ShardReader(_shard(0)) as reader:
        assert reader.video_ids() == ["m_002", "m_003", "m_004", "m_005"]  # manifest order kept
        assert not np.array_equal(reader.read("m_003", "maskige", 3), before)
    assert "shard-0.h5: all 4 videos unchanged" in _rerun(capsys)  # the copies kept their stored digests
    _equals_from_scratch(tmp_path)


def test_a_changed_extraction_recomputes_its_video(work, tmp_path, capsys):
    """m_004's frames are re-extracted differently (a new content digest): only m_004 is read again."""
    extract = Path("data") / "ms3" / "extract" / "shard-0.h5"
    with ShardReader(extract) as reader:
        file_attrs = reader.file_attrs()
        videos = {
            v: (reader.video_attrs(v), {k: reader.read(v, k) for k in reader.keys(v)}) for v in reader.video_ids()
        }
    videos["m_004"][1]["frames"][0, 0, 0] ^= 0xFF
    made_by_writer = {"kind", "params_hash", "package_version", "code_digest", "num_videos"}
    header = {k: v for k, v in file_attrs.items() if k not in made_by_writer}
    with ShardWriter(extract, kind="extract", params_hash=file_attrs["params_hash"], attrs=header) as writer:
        for vid, (attrs, arrays) in videos.items():
            attrs = {k: v for k, v in attrs.items() if k not in ("array_digests", CONTENT_DIGEST)}
            writer.write_video(vid, arrays, attrs)
    out = _rerun(capsys)
    assert "proposals shard-0.h5: 3 of 4 videos reused from the previous shard" in out, out
    with ShardReader(extract) as frames, ShardReader(_shard(0)) as maskiges:
        assert maskiges.video_attrs("m_004")[SOURCE_DIGEST] == frames.video_attrs("m_004")[CONTENT_DIGEST]
    _equals_from_scratch(tmp_path)


def _flip_maskige_chunk(path: Path, video: str) -> None:
    """Flip bytes inside the stored (compressed) first frame of a video's maskige, in the file itself."""
    with ShardReader(path) as reader:
        location = reader.locate(video, "maskige")
    offset, size = location.chunks[0][0], location.chunks[0][1]
    with open(path, "r+b") as fh:
        fh.seek(offset + size // 2)
        byte = fh.read(4)
        fh.seek(offset + size // 2)
        fh.write(bytes(b ^ 0x5A for b in byte))


@pytest.mark.parametrize(
    "damage", ["maskige bytes", "mask_counts value", "content digest", "input digest", "stored digest"]
)
def test_a_corrupt_previous_shard_is_not_reused(work, tmp_path, capsys, damage):
    if damage == "maskige bytes":
        _flip_maskige_chunk(_shard(0), "m_005")
    else:
        with h5py.File(_shard(0), "r+") as fh:
            group = fh["videos"]["m_005"]
            if damage == "mask_counts value":
                group["mask_counts"][2] += 1  # the digests left as they were
            elif damage == "content digest":
                group.attrs[CONTENT_DIGEST] = "0" * 64
            elif damage == "stored digest":
                group.attrs[STORED_DIGEST] = "0" * 64
            else:
                group.attrs[MASKIGE_FILES_DIGEST] = "0" * 64
    out = _rerun(capsys)
    assert "proposals shard-0.h5: 3 of 4 videos reused from the previous shard" in out, out
    _equals_from_scratch(tmp_path)


def test_the_hash_cache_spares_unchanged_files_their_read(work, capsys):
    """A value planted in the cache for a file whose stat is unchanged is what the run uses: unchanged
    PNGs are not read (here the planted digest makes m_001 look changed, so it alone is read again)."""
    path = work / "data" / "cache" / "maskiges-ms3.sha256.json"
    cache = json.loads(path.read_text())
    key = str((work / _png_of("m_001", 1)).resolve())
    cache["entries"][key][4] = "f" * 64
    path.write_text(json.dumps(cache))
    out = _rerun(capsys)
    assert "proposals shard-1.h5: 1 of 2 videos reused from the previous shard" in out, out
    assert "shard-0.h5: all 4 videos unchanged" in out


def test_one_run_reads_the_hash_cache_once_and_writes_it_only_when_a_hash_changed(work, monkeypatch, capsys):
    """The tree's hash cache is read once per command, not once per shard (at AVSBench size 17 reads of a
    6 MB JSON); a run that hashed nothing leaves the file as it is; new hashes are written, atomically."""
    path = work / "data" / "cache" / "maskiges-ms3.sha256.json"
    reads = []
    read = HashCache._read

    def counted_read(cache: HashCache, file: Path) -> dict:
        reads.append(Path(file).resolve())
        return read(cache, file)

    monkeypatch.setattr(HashCache, "_read", counted_read)  # the real read, counted
    untouched = _stamp(path)
    assert "shard-1.h5: all 2 videos unchanged" in _rerun(capsys)
    assert reads == [path.resolve()] and _stamp(path) == untouched
    edited = [_png_of("m_000", 3), _png_of("m_004", 2)]  # one in each shard
    for png in edited:
        write_combo_png(png, random_masks(40, 40, k=6))
    reads.clear()
    out = _rerun(capsys)
    assert "shard-0.h5: 3 of 4 videos reused" in out and "shard-1.h5: 1 of 2 videos reused" in out, out
    assert reads == [path.resolve()]
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 5 * len(VIDEOS)
    assert all(entries[str(png.resolve())][4] == sha256_of_file(png) for png in edited)
    assert not list(path.parent.glob(f".{path.name}*"))  # no temporary left beside it


def test_shards_no_longer_in_data_shards_are_removed(work, capsys):
    folder = Path("data") / "ms3" / "proposals"
    for name in (
        "shard-7.h5",
        "shard-7.h5.sha256",
        "shard-7.failures.csv",
        "shard-07.h5",
        "shard-7-backup.h5",
        "notes.txt",
    ):
        (folder / name).write_text("x")
    out = _rerun(capsys)
    removed = [line for line in out.splitlines() if "removed" in line]
    assert len(removed) == 3 and all("shard 7 is not in data.shards" in line for line in removed), out
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(
        ["shard-0.h5", "shard-0.failures.csv", "shard-1.h5", "shard-1.failures.csv", "shard-0.h5.sha256"]
        + ["shard-1.h5.sha256"]
        + ["shard-07.h5", "shard-7-backup.h5", "notes.txt"]
    )


@pytest.mark.parametrize("sealed", [True, False])
def test_stored_intact_sees_a_changed_value_with_or_without_a_stored_digest(tmp_path, sealed):
    """PreviousShard.stored_intact: by the stored digest of a sealed video, else by reading the arrays back."""
    path = tmp_path / "s.h5"
    with ShardWriter(path, kind="proposals", params_hash="h") as writer:
        for vid in ("a", "b"):
            writer.write_video(vid, {"maskige": np.full((2, 8, 8, 3), 9, np.uint8), "mask_counts": np.arange(2)})
            if sealed:
                writer.seal_video(vid)
    with h5py.File(path, "r+") as fh:
        fh["videos"]["b"]["mask_counts"][1] = 5
    header = ShardWriter(path, kind="proposals", params_hash="h").file_attrs
    with PreviousShard(path, header) as previous:
        assert previous.stored_intact("a") and not previous.stored_intact("b")


def test_the_index_lists_each_video_and_survives_a_copy(tmp_path):
    """ShardWriter writes /_index at close (written and copied videos alike); ShardReader.index reads it."""
    path, copy = tmp_path / "s.h5", tmp_path / "c.h5"
    with ShardWriter(path, kind="proposals", params_hash="h", index_keys=("own",)) as writer:
        for vid in ("b/1", "a"):
            arrays = {"maskige": np.full((2, 8, 8, 3), len(vid), np.uint8), "mask_counts": np.arange(2)}
            writer.write_video(vid, arrays, {SOURCE_DIGEST: f"s{vid}", "own": vid, "other": 1, "warnings": ["w"]})
            writer.seal_video(vid)
    with ShardReader(path) as reader:
        index = reader.index()
        assert list(index) == ["b/1", "a"] == reader.video_ids()
        for vid in index:
            attrs = reader.video_attrs(vid)
            expected = {k: attrs[k] for k in (CONTENT_DIGEST, SOURCE_DIGEST, STORED_DIGEST, "own", "warnings")}
            assert index[vid] == {**expected, SHAPES: {"maskige": [2, 8, 8, 3], "mask_counts": [2]}}
        with ShardWriter(copy, kind="proposals", params_hash="h", index_keys=("own",)) as writer:
            writer.copy_video(reader, "a")
            writer.write_video("c", {"mask_counts": np.arange(3)})
    with ShardReader(copy) as copied:
        assert list(copied.index()) == ["a", "c"]
        assert copied.index()["a"] == index["a"]
        assert copied.index()["c"][SHAPES] == {"mask_counts": [3]}


def test_a_shard_without_a_readable_index_has_none(tmp_path):
    path = tmp_path / "s.h5"
    with ShardWriter(path, kind="proposals", params_hash="h") as writer:
        writer.write_video("a", {"mask_counts": np.arange(2)})
    with h5py.File(path, "r+") as fh:
        del fh["_index"]
        fh["_index"] = np.frombuffer(b'{"format": 1, "videos": [["z", {}]]}', np.uint8)  # lists another video
    with ShardReader(path) as reader:
        assert reader.index() is None
    with h5py.File(path, "r+") as fh:
        del fh["_index"]  # as written before indexes
    with ShardReader(path) as reader:
        assert reader.index() is None


@pytest.fixture
def counted_attr_reads(monkeypatch) -> list[str]:
    """Every ShardReader.video_attrs call (video ids), through the real method."""
    calls: list[str] = []
    real = ShardReader.video_attrs

    def counting(self, video_id, keys=None):
        calls.append(video_id)
        return real(self, video_id, keys)

    monkeypatch.setattr(ShardReader, "video_attrs", counting)
    return calls


def test_an_unchanged_shard_is_kept_without_reading_any_video(work, tmp_path, capsys, counted_attr_reads):
    stamps = {shard: _stamp(_shard(shard)) for shard in (0, 1)}
    digests = {shard: digest_file(_shard(shard)).read_text() for shard in (0, 1)}
    out = _rerun(capsys)
    assert out.count("videos unchanged; previous shard kept as is\n") == 2, out  # the fast path: no reason given
    assert counted_attr_reads == []  # decided on the two shards' indexes
    assert {shard: _stamp(_shard(shard)) for shard in (0, 1)} == stamps
    assert {shard: digest_file(_shard(shard)).read_text() for shard in (0, 1)} == digests  # kept with its shard
    warned = read_failures(failures_file(_shard(0)))  # the warning, from the index
    assert [row["video_id"] for row in warned] == ["m_002"] and "beyond the 150-row palette" in warned[0]["reason"]
    _equals_from_scratch(tmp_path)


def test_a_rewritten_shard_gets_a_digest_that_matches_it(work):
    for shard in (0, 1):
        assert file_digest_mismatch(_shard(shard)) == ""
        assert digest_file(_shard(shard)).read_text().split() == [sha256_of_file(_shard(shard)), f"shard-{shard}.h5"]


def _change_indexed_source_digest(path: Path) -> None:
    """Change one hex digit of the first ``source_digest`` the index lists, in place: the index stays valid
    JSON and the file is otherwise as written."""
    with ShardReader(path) as reader:
        offset = reader._h5["_index"].id.get_offset()
        raw = reader._h5["_index"][()].tobytes()
    at = raw.index(b'"source_digest": "') + len(b'"source_digest": "')
    with open(path, "r+b") as fh:
        fh.seek(offset + at)
        fh.write(b"0" if raw[at : at + 1] != b"0" else b"1")


def test_changed_file_bytes_fail_the_digest_and_take_the_per_video_path(work, tmp_path, capsys):
    _flip_maskige_chunk(_shard(0), "m_005")
    out = _rerun(capsys)
    assert (
        "proposals shard-0.h5: 3 of 4 videos reused from the previous shard "
        "(checked per video: shard-0.h5 differs from its shard-0.h5.sha256)" in out
    ), out
    assert "shard-1.h5: all 2 videos unchanged; previous shard kept as is\n" in out
    assert file_digest_mismatch(_shard(0)) == ""  # the rewritten shard's digest
    _equals_from_scratch(tmp_path)


def test_a_changed_index_is_not_trusted(work, tmp_path, capsys):
    """Bytes changed in the index alone: the digest fails, the per-video check finds every video intact but
    the index disagreeing with them, so the shard is rewritten (copies) with a right index."""
    _change_indexed_source_digest(_shard(0))
    with ShardReader(_shard(0)) as reader:
        assert reader.index() is not None  # still an index, a wrong one
    out = _rerun(capsys)
    assert "shard-0.h5: 4 of 4 videos reused from the previous shard (checked per video" in out, out
    with ShardReader(_shard(0)) as reader:
        assert reader.index() is not None and file_digest_mismatch(_shard(0)) == ""
    _equals_from_scratch(tmp_path)


def test_a_missing_digest_takes_the_per_video_path_once(work, tmp_path, capsys, counted_attr_reads):
    """The crash window between the shard's rename and its digest's write: the videos are checked one by
    one; the shard, found intact with an index that agrees, is kept and its digest recorded."""
    stamp = _stamp(_shard(1))
    digest_file(_shard(1)).unlink()
    out = _rerun(capsys)
    assert (
        "shard-1.h5: all 2 videos unchanged; previous shard kept as is "
        "(checked per video: no shard-1.h5.sha256; its digest recorded)" in out
    ), out
    assert sorted(set(counted_attr_reads)) == ["m_000", "m_001"]  # shard 1's videos; shard 0 by its index
    assert _stamp(_shard(1)) == stamp and file_digest_mismatch(_shard(1)) == ""
    counted_attr_reads.clear()
    assert _rerun(capsys).count("previous shard kept as is\n") == 2 and counted_attr_reads == []
    _equals_from_scratch(tmp_path)


def test_a_stale_digest_never_passes_a_rewritten_shard(work, tmp_path, capsys):
    """A rename, then a crash before the digest: the digest left is the previous shard's."""
    stale = digest_file(_shard(0)).read_text()
    write_combo_png(_png_of("m_003", 4), random_masks(40, 40, k=7))
    _rerun(capsys)
    digest_file(_shard(0)).write_text(stale)
    out = _rerun(capsys)
    assert "shard-0.h5: all 4 videos unchanged; previous shard kept as is (checked per video: shard-0.h5 differs" in out
    _equals_from_scratch(tmp_path)


def test_shards_written_before_indexes_are_checked_per_video(work, tmp_path, capsys):
    """Previous proposals shards and extract shards without an index: per-video reads; a proposals shard
    without one is rewritten once (its videos copied) to gain an index and a digest."""
    for path in (_shard(0), Path("data") / "ms3" / "extract" / "shard-0.h5"):
        with h5py.File(path, "r+") as fh:
            del fh["_index"]
    record_file_digest(_shard(0))  # even with a matching digest
    out = _rerun(capsys)
    assert (
        "shard-0.h5: 4 of 4 videos reused from the previous shard (checked per video: previous shard has no "
        "index (written by an earlier version))" in out
    ), out
    with ShardReader(_shard(0)) as reader:
        assert list(reader.index()) == ["m_002", "m_003", "m_004", "m_005"]
    assert "shard-0.h5: all 4 videos unchanged; previous shard kept as is\n" in _rerun(capsys)
    _equals_from_scratch(tmp_path)
