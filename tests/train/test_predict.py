"""`avs predict` on a raw video with a (briefly) trained checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline import media
from pipeline.shards import ShardReader, shard_file
from stages.cli import main
from train.loop import TrainParams, train
from train.predict import clip_features, load_predictor


@pytest.fixture(scope="module")
def transavs_checkpoint(tmp_path_factory, toy_params, toy_shards):
    root = tmp_path_factory.mktemp("predict_shards")
    toy_shards(root, dim=1024)  # YAMNet width: predict computes real YAMNet embeddings
    result = train(toy_params(model="transavs_tiny", max_steps=2), str(root), [0], root / "run", progress=False)
    return result["final"]


def test_predict_any_length_video(tmp_path, make_video, transavs_checkpoint):
    video = make_video("long clip.mp4", seconds=7.4, size=(48, 64))
    out = tmp_path / "pred"
    assert main(["predict", str(video), "--checkpoint", str(transavs_checkpoint), "--out", str(out)]) == 0
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["seconds"] == 7  # one prediction per whole second, in windows of 5
    masks = sorted((out / "masks").glob("second_*.png"))
    assert len(masks) == 7
    overlay = media.decode_all_frames(out / "overlay.mp4")
    assert overlay.shape[0] == 7 and overlay.dtype == np.uint8


def test_predict_bad_input_is_one_line(tmp_path, transavs_checkpoint, capsys):
    bad = tmp_path / "not a video.mp4"
    bad.write_text("hello\n" * 30)
    assert main(["predict", str(bad), "--checkpoint", str(transavs_checkpoint), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a video.mp4" in err[0]
    assert main(["predict", str(bad), "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2


TINY_GENERATOR = {"points_per_side": 2, "coarse_levels": 0, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.5}


@pytest.fixture(scope="module")
def combo_pipeline(tmp_path_factory):
    """A real folder dataset through manifest -> extract -> audio -> proposals, and a COMBO checkpoint
    trained one step on those shards (so its feature records are the stages' own)."""
    import yaml

    from tests.conftest import index_frames, tone

    root = tmp_path_factory.mktemp("combo_predict")
    videos = root / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        media.encode_video(videos / f"{name}.mp4", index_frames(80, 48, 64), 25, tone(3.2))
    params = root / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "root": str(root / "data"),
                    "manifests": str(root / "manifests"),
                    "datasets": ["vids"],
                    "shards": [0],
                },
                "dask": {"n_workers": 0},
                "manifest": {
                    "datasets": {"vids": {"source": "folder", "root": str(videos), "seconds": 3, "split": "train"}}
                },
                "extract": {"frame_size": [48, 64]},
                "audio": {"encoder": "yamnet"},
                "proposals": {"preset": "demo", "encoder_size": 256, "generator": TINY_GENERATOR, "cache_dir": ""},
            }
        )
    )
    common = ["--params", str(params), "--dataset", "vids", "--no-progress"]
    assert main(["manifest", *common]) == 0
    for stage in ("extract", "audio", "proposals"):
        assert main([stage, *common, "--shard", "0"]) == 0, stage
    cfg = TrainParams(
        model="combo_tiny",
        datasets=["vids"],
        size=[48, 64],
        batch_size=1,
        max_steps=1,
        num_workers=0,
        threads=1,
        augment=False,
    )
    result = train(cfg, str(root / "data"), [0], root / "run", progress=False)
    return root, result["final"]


def test_combo_predict_computes_the_maskiges_the_proposals_stage_computed(combo_pipeline, tmp_path):
    root, checkpoint = combo_pipeline
    predictor = load_predictor(checkpoint)
    assert predictor.features["proposals"].preset == "demo"  # the recorded settings, not the default preset
    video = root / "videos" / "a.mp4"
    clip = media.extract_clip(video, 3, tuple(predictor.features["extract"].frame_size))
    features = clip_features(predictor, clip.frames, clip.audio, 3)
    with ShardReader(shard_file(root / "data", "vids", "proposals", 0)) as reader:
        stored = reader.read("a.mp4", "maskige")
    np.testing.assert_array_equal(features["maskige"], stored)
    out = tmp_path / "pred"
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 0
    masks = sorted((out / "masks").glob("second_*.png"))
    assert len(masks) == 3
    from PIL import Image

    assert Image.open(masks[0]).size == (64, 48)  # the video's own resolution (W, H)


def test_predict_refuses_a_checkpoint_without_feature_records(combo_pipeline, tmp_path, capsys):
    _, checkpoint = combo_pipeline
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["feature_params"]["proposals"]["preset"]
    broken = tmp_path / "broken.pt"
    torch.save(ckpt, broken)
    assert main(["predict", str(broken), "--checkpoint", str(broken), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "broken.pt" in err and "preset" in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_of_another_version_is_one_line(tmp_path, make_video, transavs_checkpoint, capsys):
    """Weights that no longer fit the model (here: the clip-level W_1 of earlier versions, N x T)."""
    ckpt = torch.load(transavs_checkpoint, weights_only=True)
    weight = ckpt["state_dict"]["audio_queries.query_weight"]
    ckpt["state_dict"]["audio_queries.query_weight"] = weight[:, :5].clone()
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    video = make_video(tmp_path / "v.mp4", seconds=2)
    assert main(["predict", str(video), "--checkpoint", str(old), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "old.pt" in err and "audio_queries.query_weight" in err and len(err.strip().splitlines()) == 1


def test_predict_a_150_s_video_in_windows(tmp_path, transavs_checkpoint, capsys):
    """A long video: one mask per second at the video's resolution, an overlay frame per second, the
    AVSBench frame of each second (frame plan of 4 fps: index 4*l + 3), memory bounded by a window."""
    from tests.conftest import tone

    seconds, fps = 150, 4
    video = tmp_path / "long video.mp4"
    frames = np.zeros((seconds * fps, 48, 64, 3), np.uint8)
    frames[:, 8:40, 8:40] = (200, 40, 40)
    media.encode_video(video, (frames[s : s + 200] for s in range(0, len(frames), 200)), fps, tone(seconds), crf=30)
    out = tmp_path / "pred"
    assert (
        main(["predict", str(video), "--checkpoint", str(transavs_checkpoint), "--out", str(out), "--no-progress"]) == 0
    )
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["seconds"] == seconds and summary["frame_indices"] == [4 * s + 3 for s in range(seconds)]
    masks = sorted((out / "masks").glob("second_*.png"))
    assert len(masks) == seconds and masks[-1].name == "second_0149.png"
    overlay = media.decode_all_frames(out / "overlay.mp4")
    assert overlay.shape == (seconds, 48, 64, 3)


def test_predict_and_evaluate_choose_the_device_by_one_rule():
    from train.device import inference_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert inference_device().type == expected and inference_device("auto").type == expected
    assert inference_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            inference_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        inference_device("gpu0")
