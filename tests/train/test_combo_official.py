"""Our COMBO against the official code (yannqi/COMBO-AVS): golden outputs of tools/combo_golden.py.

The fixture holds the official small R50 model's key list, inputs and outputs; its weights are
rebuilt from tests/fixtures/combo/weights.py and loaded through the official-checkpoint converter,
so this also checks the rename table. Mutations of the fusion block must break the match.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.resnet import Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

from tests.fixtures.combo.weights import random_state
from train.models.backbones.resnet import ResNetBackbone
from train.models.combo import SiamEncoder, build_combo
from train.models.inference import semantic_scores, upsample_mask_logits
from train.official_combo import official_to_toolkit_state

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "combo"
RTOL = 1e-4  # float32 kernels (conv, attention, grid_sample) summed in another order


def relative_error(ours: torch.Tensor, official: np.ndarray) -> float:
    official = torch.from_numpy(official)
    return float((ours.detach().float() - official).abs().max() / official.abs().max().clamp_min(1e-6))


def narrow_resnet50() -> ResNetBackbone:
    """The ResNet-50 trunk of the official SMALL config (stem 16, res2 32, width per group 8)."""
    return ResNetBackbone(Bottleneck, (3, 4, 6, 3), widths=(8, 16, 32, 64), stem_width=16, norm_layer=FrozenBatchNorm2d)


def small_combo(**overrides):
    config = dict(
        backbone="resnet18_small",  # replaced below; these widths give the trunk's channels
        backbone_kwargs={"widths": (32, 64, 128, 256)},
        num_classes=2,
        audio_dim=128,
        hidden_dim=256,
        pixel_decoder_layers=2,
        decoder_layers=3,
        num_queries=10,
        decoder_ffn=256,
        audio_mlp_hidden=(4096, 4096),
    )
    config.update(overrides)
    model = build_combo(**config)
    model.siam_encoder = SiamEncoder(narrow_resnet50(), narrow_resnet50())
    return model


@pytest.fixture(scope="module")
def golden():
    meta = json.loads((FIXTURES / "golden_small.json").read_text())
    with np.load(FIXTURES / "golden_small.npz") as data:
        arrays = {key: data[key] for key in data.files}
    # The numeric fixture starts after VGGish (its embeddings are inputs): its weights are not needed.
    shapes = {k: v for k, v in meta["shapes"].items() if not k.startswith("audio_backbone.")}
    state = official_to_toolkit_state(random_state(shapes, meta["seed"]), "golden_small")
    model = small_combo()
    model.load_state_dict(state, strict=True)
    return model.eval(), arrays


def our_outputs(model, arrays: dict) -> dict[str, torch.Tensor]:
    mean = torch.tensor([123.675, 116.280, 103.530]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.120, 57.375]).view(1, 3, 1, 1)
    frames = (torch.from_numpy(arrays["frames"]) - mean) / std
    maskiges = (torch.from_numpy(arrays["maskiges"]) - mean) / std
    audio = torch.from_numpy(arrays["audio"])
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        siam = model.siam_encoder
        image = siam.image_backbone(frames)
        for key, value in image.items():
            out[f"image_{key}"] = value
        features = siam(frames, maskiges)
        for key, value in features.items():
            out[f"siam_{key}"] = value
        out["mask_features"], multi_scale = model.pixel_decoder(features)
        for i, level in enumerate(multi_scale):
            out[f"multi_scale_{i}"] = level
        out["fused_visual"], out["fused_audio"] = model.bilateral_fusion(out["mask_features"], audio[:, None])
        out["audio_queries"] = model.audio_mlp(out["fused_audio"])
        outputs = model({"frames": frames[None], "maskiges": maskiges[None], "audio": audio[None]})
        layers = [*outputs["aux_outputs"], outputs]
        for i, layer in enumerate(layers):
            out[f"pred_logits_{i}"], out[f"pred_masks_{i}"] = layer["pred_logits"][0], layer["pred_masks"][0]
        size = arrays["frames"].shape[-2:]
        out["semseg"] = semantic_scores(outputs["pred_logits"][0], upsample_mask_logits(outputs["pred_masks"][0], size))
    return out, outputs


FORWARD_KEYS = (
    [f"image_res{i}" for i in range(2, 6)]
    + [f"siam_res{i}" for i in range(2, 6)]
    + ["mask_features", "multi_scale_0", "multi_scale_1", "multi_scale_2", "fused_visual", "fused_audio"]
    + ["audio_queries"]
    + [f"pred_{kind}_{i}" for i in range(4) for kind in ("logits", "masks")]
    + ["semseg"]
)


def test_every_stored_output_matches_the_official_code(golden):
    model, arrays = golden
    out, _ = our_outputs(model, arrays)
    errors = {key: relative_error(out[key], arrays[key]) for key in FORWARD_KEYS}
    assert max(errors.values()) < RTOL, {k: f"{v:.1e}" for k, v in errors.items() if v >= RTOL}


def test_losses_match_the_official_criterion(golden):
    """CE and the inter-frame term are exact given the matching; BCE and dice are estimated on random
    points (12544 per mask, importance sampled) in both codes, so they agree to a few percent."""
    model, arrays = golden
    _, outputs = our_outputs(model, arrays)
    gt = torch.from_numpy(arrays["gt"])[None]
    batch = {"masks": gt, "labelled": torch.ones(gt.shape[:2], dtype=torch.bool)}
    torch.manual_seed(0)
    losses = model.compute_losses(outputs, batch)
    assert float(losses["ada"]) == pytest.approx(float(arrays["loss_cosine"]), rel=1e-5)
    assert float(losses["ce"]) == pytest.approx(float(arrays["loss_ce"]), rel=0.01)  # matching on random points
    assert float(losses["bce"]) == pytest.approx(float(arrays["loss_mask"]), rel=0.02)
    assert float(losses["dice"]) == pytest.approx(float(arrays["loss_dice"]), rel=0.02)


def _softmax_over_audio_tokens(self, logits):
    return logits.softmax(-1), logits.transpose(-1, -2).softmax(-1)


def _residual_on_raw_features(self, pixels, pixels_normed, audio, audio_normed):
    return pixels, audio


def _no_residual(self, pixels, pixels_normed, audio, audio_normed):
    return torch.zeros_like(pixels), torch.zeros_like(audio)


@pytest.mark.parametrize(
    "method, mutant",
    [
        ("attention", _softmax_over_audio_tokens),
        ("residual_bases", _residual_on_raw_features),
        ("residual_bases", _no_residual),
    ],
    ids=["softmax-over-wrong-axis", "swapped-norm", "dropped-residual"],
)
def test_a_wrong_fusion_block_fails_the_golden_check(golden, monkeypatch, method, mutant):
    """Each mutation of the fusion block moves the outputs far beyond the tolerance, so the golden
    test above would catch it."""
    from train.models.combo import BilateralFusion

    model, arrays = golden
    monkeypatch.setattr(BilateralFusion, method, mutant)
    out, _ = our_outputs(model, arrays)
    assert relative_error(out["fused_visual"], arrays["fused_visual"]) > 100 * RTOL
    assert relative_error(out["pred_masks_3"], arrays["pred_masks_3"]) > 100 * RTOL


# -- official checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r50_binary", "r50_avss", "pvt_binary", "pvt_avss"])
def test_every_official_key_maps_to_our_model_and_back(name):
    """The rename table against the full official models: no missing, no unexpected key, same shapes."""
    import warnings

    from train.models import build_model
    from train.official_combo import AUXILIARY_KEYS, official_key_to_toolkit, official_model_config

    shapes = json.loads((FIXTURES / f"keys_{name}.json").read_text())["shapes"]
    mapped = {official_key_to_toolkit(k): s for k, s in shapes.items() if k not in AUXILIARY_KEYS}
    assert set(AUXILIARY_KEYS) <= set(shapes) and len(mapped) == len(shapes) - len(AUXILIARY_KEYS)
    model_name, config = official_model_config({k: torch.empty(s) for k, s in mapped.items()})
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        ours = build_model(model_name, **config).state_dict()
    assert sorted(ours) == sorted(mapped)
    assert all(list(ours[k].shape) == mapped[k] for k in ours)


def _detectron2_checkpoint(tmp_path, state: dict) -> Path:
    path = tmp_path / "model_final.pth"
    torch.save({"model": state, "trainer": {"iteration": 89999}, "iteration": 89999}, path)
    return path


def test_load_checkpoint_converts_a_detectron2_combo_checkpoint(tmp_path, golden):
    from train.checkpoint import load_checkpoint

    model, _ = golden
    meta = json.loads((FIXTURES / "golden_small.json").read_text())
    shapes = {k: v for k, v in meta["shapes"].items() if not k.startswith("audio_backbone.")}
    official = random_state(shapes, meta["seed"])
    official["criterion.empty_weight"] = torch.tensor([1.0, 1.0, 0.1])
    ckpt = load_checkpoint(_detectron2_checkpoint(tmp_path, official))
    assert ckpt["step"] == 89999 and ckpt["task"] == "binary" and ckpt["model_name"] == "combo_r50"
    config = ckpt["model_config"]
    assert (config["num_classes"], config["num_queries"], config["decoder_layers"]) == (2, 10, 3)
    assert config["pixel_decoder_layers"] == 2 and config["audio_encoder"] == "precomputed"
    for key, tensor in model.state_dict().items():
        assert torch.equal(ckpt["state_dict"][key], tensor), key


def test_the_golden_weights_build_from_the_config_read_from_their_shapes(tmp_path, golden):
    """The narrow ResNet-50 trunk of the golden model is read from the shapes (widths, stem), so the
    converted checkpoint builds as a registered combo_r50 and gives the official outputs."""
    from train.checkpoint import build_from_checkpoint, load_checkpoint

    _, arrays = golden
    meta = json.loads((FIXTURES / "golden_small.json").read_text())
    shapes = {k: v for k, v in meta["shapes"].items() if not k.startswith("audio_backbone.")}
    ckpt = load_checkpoint(_detectron2_checkpoint(tmp_path, random_state(shapes, meta["seed"])))
    assert ckpt["model_config"]["backbone_kwargs"] == {"widths": [8, 16, 32, 64], "stem_width": 16}
    model = build_from_checkpoint(ckpt, "golden").eval()
    out, _ = our_outputs(model, arrays)
    assert relative_error(out["semseg"], arrays["semseg"]) < RTOL


def test_a_trunk_that_is_not_a_resnet50_is_refused_with_one_line(tmp_path):
    from train.checkpoint import CheckpointError, load_checkpoint

    meta = json.loads((FIXTURES / "golden_small.json").read_text())
    shorter = {
        k: v
        for k, v in meta["shapes"].items()
        if not k.startswith(("audio_backbone.", "backbone.res4.5.", "pre_sam_backbone.res4.5."))
    }
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(_detectron2_checkpoint(tmp_path, random_state(shorter, meta["seed"])))
    message = str(error.value)
    assert "\n" not in message and "model_final.pth" in message and "[3, 4, 5, 3]" in message


def test_an_unknown_official_key_is_refused_with_one_line(tmp_path):
    from train.checkpoint import CheckpointError, load_checkpoint

    state = {
        "sem_seg_head.predictor.query_feat.weight": torch.zeros(10, 256),
        "sem_seg_head.extra.weight": torch.zeros(1),
    }
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(_detectron2_checkpoint(tmp_path, state))
    message = str(error.value)
    assert "\n" not in message and "'sem_seg_head.extra.weight'" in message and "model_final.pth" in message
