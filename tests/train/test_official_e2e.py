"""Official COMBO checkpoints (detectron2 ``model_final.pth``) end to end: ``avs evaluate`` on toy shards and
``avs predict`` on a generated video give what the same weights give as a toolkit checkpoint; the
``--model`` / ``--task`` / ``--num-classes`` / ``--features`` flags.

The official file is made from our model's state dict renamed to the official names by the converter's
table read backwards over the official key list of the small R50 model (``golden_small.json``: a
narrow ResNet-50 trunk, 2 pixel-decoder layers, 3 decoder layers, 10 queries; VGGish left out, so the
model reads precomputed embeddings, here YAMNet's 1024-d ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stages.cli import main
from tests.fixtures.combo.weights import random_tensor
from train.checkpoint import load_checkpoint, save_checkpoint
from train.models import build_model
from train.official_combo import official_key_to_toolkit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "combo"
AUDIO_DIM = 1024  # YAMNet embeddings: what predict computes with the default audio section
STEP = 1234
SMALL_R50 = dict(
    audio_encoder="precomputed",
    audio_dim=AUDIO_DIM,
    backbone_kwargs={"widths": [8, 16, 32, 64], "stem_width": 16},
    pixel_decoder_layers=2,
    decoder_layers=3,
    num_queries=10,
    decoder_ffn=256,
)
TINY_GENERATOR = {"points_per_side": 2, "coarse_levels": 0, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.5}


def official_names() -> dict[str, str]:
    """Our key -> the official key, over the small model's official key list (VGGish left out)."""
    shapes = json.loads((FIXTURES / "golden_small.json").read_text())["shapes"]
    names = {official_key_to_toolkit(key): key for key in shapes if not key.startswith("audio_backbone.")}
    names.pop(None, None)  # criterion.empty_weight: training only
    return names


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, toy_shards):
    """Toy shards with 1024-d audio, and one set of random weights of the small R50 COMBO saved twice: as
    a detectron2 file (official names, ``{"model", "iteration"}``) and as a toolkit checkpoint."""
    root = tmp_path_factory.mktemp("official")
    toy_shards(root / "data", dim=AUDIO_DIM)
    model = build_model("combo_r50", **SMALL_R50)
    state = {key: random_tensor(key, tuple(t.shape), 7) for key, t in model.state_dict().items()}
    model.load_state_dict(state)  # nothing left at an identity init: every path contributes
    names = official_names()
    assert sorted(names) == sorted(state)  # the reverse table covers our model exactly
    official = root / "model_final.pth"
    official_state = {names[key]: tensor for key, tensor in state.items()}
    official_state["criterion.empty_weight"] = torch.tensor([1.0, 1.0, 0.1])
    torch.save({"model": official_state, "trainer": {"iteration": STEP}, "iteration": STEP}, official)
    ours = root / "model.pt"
    record = {"model_name": "combo_r50", "model_config": SMALL_R50, "state_dict": state, "step": STEP}
    save_checkpoint({**record, "task": "binary", "train_params": {"size": [32, 32]}}, ours)
    return root, official, ours


def evaluate_params(root: Path) -> Path:
    params = root / "params.yaml"
    evaluate = {"datasets": ["toy"], "overlays": 1, "size": [32, 32], "threads": 1}
    params.write_text(yaml.safe_dump({"data": {"root": str(root / "data"), "shards": [0]}, "evaluate": evaluate}))
    return params


def test_the_converted_checkpoint_records_the_small_model(checkpoints):
    _, official, _ = checkpoints
    ckpt = load_checkpoint(official)
    assert ckpt["model_name"] == "combo_r50" and ckpt["step"] == STEP and ckpt["task"] == "binary"
    assert {k: ckpt["model_config"][k] for k in SMALL_R50} == SMALL_R50
    assert ckpt["train_params"] == {"size": [224, 224]}  # COMBO's test size, unless evaluate.size says otherwise


def test_avs_evaluate_scores_an_official_checkpoint_as_the_toolkit_one(checkpoints, single_thread):
    root, official, ours = checkpoints
    params = evaluate_params(root)
    metrics = {}
    for name, checkpoint, flags in [
        ("official", official, ["--model", "combo_r50", "--task", "binary", "--num-classes", "2"]),
        ("ours", ours, []),
    ]:
        out = root / f"eval_{name}"
        argv = ["evaluate", "--params", str(params), "--checkpoint", str(checkpoint), "--out", str(out)]
        assert main([*argv, "--no-progress", *flags]) == 0, name
        metrics[name] = json.loads((out / "metrics.json").read_text())
        assert (out / "per_video.csv").read_text().count("\n") == 3 and (out / "report.html").is_file()
    official_entry, our_entry = metrics["official"]["toy"], metrics["ours"]["toy"]
    assert official_entry["num_videos"] == 2 and metrics["official"]["step"] == STEP
    for key in ("M_J", "M_F"):
        assert 0 <= official_entry[key] <= 1
        assert official_entry[key] == pytest.approx(our_entry[key], abs=1e-6), key
    assert official_entry["shuffled_audio"]["M_J"] == pytest.approx(our_entry["shuffled_audio"]["M_J"], abs=1e-6)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--model", "combo_pvt_b5"], ["--model combo_pvt_b5", "resnet50"]),
        (["--model", "combo_mnv2"], ["--model combo_mnv2", "mobilenet_v2"]),
        (["--num-classes", "71"], ["--num-classes 71", "2 classes"]),
        (["--task", "semantic"], ["--task semantic", "2 classes (binary)"]),
    ],
    ids=["other-trunk", "not-the-trunk", "classes", "task"],
)
def test_a_flag_that_contradicts_the_shapes_is_one_line(checkpoints, capsys, flags, named):
    root, official, _ = checkpoints
    argv = ["evaluate", "--params", str(evaluate_params(root)), "--checkpoint", str(official)]
    assert main([*argv, "--out", str(root / "refused"), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_final.pth" in err[0] and all(part in err[0] for part in named), err
    assert not (root / "refused").exists()


def test_an_unknown_model_flag_is_one_line_listing_the_known_models(checkpoints, capsys):
    root, official, _ = checkpoints
    argv = ["evaluate", "--params", str(evaluate_params(root)), "--checkpoint", str(official), "--out", str(root / "x")]
    assert main([*argv, "--model", "combo_r51"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model" in err[0] and "'combo_r51'" in err[0] and "combo_r50" in err[0]


def test_a_flag_that_contradicts_a_toolkit_checkpoint_is_one_line(checkpoints, capsys):
    root, _, ours = checkpoints
    argv = ["evaluate", "--params", str(evaluate_params(root)), "--checkpoint", str(ours), "--out", str(root / "x")]
    assert main([*argv, "--model", "combo_tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model combo_tiny" in err[0] and "model.pt" in err[0] and "combo_r50" in err[0]


# -- avs predict ---------------------------------------------------------------------------------


def features_file(root: Path) -> Path:
    """A params file naming the features: 32x32 frames, YAMNet embeddings, MobileSAM maskiges (tiny grid)."""
    path = root / "features.yaml"
    proposals = {"backend": "mobile_sam", "preset": "demo", "encoder_size": 256, "generator": TINY_GENERATOR}
    sections = {"extract": {"frame_size": [32, 32]}, "proposals": {**proposals, "cache_dir": ""}}
    path.write_text(yaml.safe_dump(sections))
    return path


def test_avs_predict_runs_an_official_checkpoint_with_the_features_flag(checkpoints, make_video, single_thread):
    from PIL import Image

    root, official, ours = checkpoints
    video = make_video("clip.mp4", seconds=3.2, size=(48, 64))
    masks = {}
    for name, checkpoint in [("official", official), ("ours", ours)]:
        out = root / f"pred_{name}"
        argv = ["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]
        assert main([*argv, "--features", str(features_file(root)), "--size", "32", "32"]) == 0, name
        summary = json.loads((out / "prediction.json").read_text())
        assert summary["seconds"] == 3 and summary["model"] == "combo_r50"
        files = sorted((out / "masks").glob("second_*.png"))
        assert len(files) == 3 and Image.open(files[0]).size == (64, 48)
        masks[name] = np.stack([np.asarray(Image.open(f)) for f in files])
    np.testing.assert_array_equal(masks["official"], masks["ours"])  # same weights, same features


def test_predict_says_what_an_official_checkpoint_without_vggish_needs(checkpoints, make_video, capsys):
    root, official, _ = checkpoints
    video = make_video("short.mp4", seconds=1.2, size=(48, 64))
    assert main(["predict", str(video), "--checkpoint", str(official), "--out", str(root / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_final.pth" in err[0] and "--features" in err[0]


def test_published_features_need_the_semantic_sam_weights(tmp_path):
    """An official checkpoint with its VGGish reads log-mel; its maskiges are Semantic-SAM's, whose weights
    file must be named (one line says how) and is then used with COMBO's generator settings."""
    import warnings

    from train.predict import SEMANTIC_SAM_WEIGHTS, published_combo_features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VGGish without weights: its values do not matter here
        model = build_model("combo_tiny", audio_encoder="vggish", audio_dim=128)
    checkpoint = tmp_path / "model_final.pth"
    with pytest.raises(ValueError) as error:
        published_combo_features(model, checkpoint, None)
    message = str(error.value)
    assert "\n" not in message and f"--proposals '{{checkpoint: {SEMANTIC_SAM_WEIGHTS}}}'" in message
    weights = tmp_path / SEMANTIC_SAM_WEIGHTS
    weights.write_bytes(b"named, not read here")
    features = published_combo_features(model, checkpoint, {"checkpoint": str(weights)})
    assert features["proposals"].backend == "semantic_sam" and features["proposals"].checkpoint == str(weights)
    assert features["proposals"].semantic_sam_settings()["points_per_side"] == 32  # COMBO's settings
    assert list(features["extract"].frame_size) == [224, 224]


@pytest.mark.slow
def test_a_full_size_official_r50_checkpoint_with_its_vggish_scores_in_avs_evaluate(
    tmp_path, toy_shards, single_thread
):
    """The published format at full size (combo_r50: standard ResNet-50s, 100 queries, 9 decoder layers,
    VGGish inside reading the shards' log-mel), named by the official R50 key list, scores in
    ``avs evaluate`` as the same weights saved as a toolkit checkpoint."""
    import warnings

    toy_shards(tmp_path / "data")
    shapes = json.loads((FIXTURES / "keys_r50_binary.json").read_text())["shapes"]
    names = {official_key_to_toolkit(key): key for key in shapes}
    names.pop(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VGGish built without its weights file: the checkpoint brings them
        model = build_model("combo_r50")
    state = {key: random_tensor(key, tuple(t.shape), 11) for key, t in model.state_dict().items()}
    assert sorted(names) == sorted(state)
    official = tmp_path / "model_final.pth"
    torch.save({"model": {names[k]: v for k, v in state.items()}, "iteration": STEP}, official)
    ours = tmp_path / "model.pt"
    record = {"model_name": "combo_r50", "model_config": {"num_classes": 2}, "state_dict": state, "step": STEP}
    save_checkpoint({**record, "task": "binary", "train_params": {"size": [32, 32]}}, ours)
    del model, state
    evaluate = {"datasets": ["toy"], "overlays": 0, "size": [32, 32], "threads": 1, "shuffle_audio": False}
    evaluate.update(silence_audio=False, noise_audio=False, offscreen_audio=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"root": str(tmp_path / "data"), "shards": [0]}, "evaluate": evaluate}))
    scores = []
    for checkpoint in (official, ours):
        out = tmp_path / f"eval_{checkpoint.stem}"
        argv = ["evaluate", "--params", str(params), "--checkpoint", str(checkpoint), "--out", str(out)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main([*argv, "--no-progress"]) == 0
        scores.append(json.loads((out / "metrics.json").read_text())["toy"])
    assert load_checkpoint(official)["model_config"].get("audio_encoder", "vggish") == "vggish"
    assert scores[0]["num_videos"] == 2
    assert scores[0]["M_J"] == pytest.approx(scores[1]["M_J"], abs=1e-6)
    assert scores[0]["M_F"] == pytest.approx(scores[1]["M_F"], abs=1e-6)
