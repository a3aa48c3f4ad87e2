"""The pure-PyTorch Semantic-SAM port against golden outputs of the official code.

Fixtures (made by tools/semantic_sam_golden.py from the official sources): a seeded, fully
random-weight model in the reduced configuration TINY (same code paths as SwinL; every norm, box
refinement and deformable offset / attention-weight layer randomised too, which the official
initialisation leaves at the identity or zero), one 100x140 frame, and the official backbone
features, encoder outputs, decoder masks / IoU scores and generator masks; plus the official SwinL
state-dict key/shape list. Six simulated porting bugs must fail the comparison (MUTATIONS).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.nn import MSDeformAttn
from pipeline.proposals.semantic_sam import (
    SKIPPED_KEYS,
    SWINL,
    SemanticSam,
    SemanticSamAutomaticMaskGenerator,
    SemanticSamConfig,
    SemanticSamGeneratorSettings,
    build_semantic_sam,
    load_semantic_sam_state,
)
from pipeline.proposals.semantic_sam.model import config_from_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "semantic_sam"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "golden_tiny.npz") as z:
        return {k: z[k] for k in z.files}


def golden_state(golden) -> dict[str, torch.Tensor]:
    return {
        k[len("weight/") :]: torch.from_numpy(v.astype(np.float32) if v.dtype == np.float16 else v)
        for k, v in golden.items()
        if k.startswith("weight/")
    }


@pytest.fixture(scope="module")
def port(golden):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = SemanticSamConfig.from_dict(json.loads(str(golden["meta"]))["config"])
    model = SemanticSam(cfg).eval()
    report = load_semantic_sam_state(model, golden_state(golden))
    assert report.missing == [] and report.unexpected == []
    assert report.skipped == sorted(SKIPPED_KEYS)  # the text/class heads, present in the official model
    return model


@pytest.fixture(scope="module")
def image(golden):
    return torch.from_numpy(golden["frame"]).permute(2, 0, 1).float()


def test_backbone_features_equal_official(port, golden, image):
    with torch.no_grad():
        feats = port.backbone(port.preprocess(image))
    for name in ("res2", "res3", "res4", "res5"):
        np.testing.assert_allclose(feats[name].numpy(), golden[f"backbone_{name}"], atol=TOL, rtol=0)


def test_encoder_outputs_equal_official(port, golden, image):
    features = port.encode(image)
    assert features.padded_size == (128, 160) and features.image_size == (100, 140)
    np.testing.assert_allclose(features.mask_features.numpy(), golden["encoder_mask_features"], atol=TOL, rtol=0)
    assert len(features.multi_scale) == 4
    for i, level in enumerate(features.multi_scale):
        np.testing.assert_allclose(level.numpy(), golden[f"encoder_level{i}"], atol=TOL, rtol=0)


def test_decoder_masks_and_iou_scores_equal_official(port, golden, image):
    features = port.encode(image)
    points = torch.from_numpy(golden["decoder_points"])
    masks, iou = port.predict_points(features, points, upsample=True)  # all 6 tokens of 6 points, decoded together
    assert masks.shape == (36, 100, 140)
    np.testing.assert_allclose(masks.numpy()[:, ::2, ::2], golden["decoder_masks"], atol=TOL, rtol=0)
    np.testing.assert_allclose(iou.numpy(), golden["decoder_ious"].reshape(-1), atol=TOL, rtol=0)
    # a token subset decodes the same queries: same values for token 0 (level 3)
    masks0, iou0 = port.predict_points(features, points, tokens=[0])
    np.testing.assert_allclose(iou0.numpy(), iou.numpy()[0::6], atol=1e-6, rtol=0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_generator_masks_equal_official(port, golden, image):
    settings = json.loads(str(golden["meta"]))["generator"]
    settings["level"] = tuple(settings["level"])
    masks, scores = SemanticSamAutomaticMaskGenerator(port, SemanticSamGeneratorSettings(**settings)).generate(image)
    expected = np.unpackbits(golden["generator_masks"], axis=-1)[..., :140].astype(bool)
    assert masks.shape == expected.shape and len(expected) >= 5
    for ours, theirs in zip(masks.numpy(), expected):  # same order too
        assert mask_iou(ours, theirs) >= 0.99
    np.testing.assert_allclose(scores.numpy(), golden["generator_ious"], atol=TOL, rtol=0)


def test_swinl_has_the_official_keys_and_shapes():
    official = json.loads((FIXTURES / "swinl_keys.json").read_text())
    with torch.device("meta"):
        model = SemanticSam(SWINL)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = {k: v for k, v in official["state_dict"].items() if not k.startswith(SKIPPED_KEYS)}
    assert ours == expected
    assert len(official["state_dict"]) == 816 and len(official["state_dict"]) - len(ours) == len(SKIPPED_KEYS)
    skipped = sum(np.prod(v) for k, v in official["state_dict"].items() if k.startswith(SKIPPED_KEYS))
    assert sum(p.numel() for p in model.parameters()) == official["parameters"] - skipped
    assert config_from_state_dict(model.state_dict()) == SWINL


def test_checkpoint_file_loads_with_prefix_and_reports_skipped(golden, tmp_path):
    state = golden_state(golden)
    path = tmp_path / "tiny_many2many.pth"
    torch.save({"model": {f"model.{k}": v for k, v in state.items()}}, path)
    model, report = build_semantic_sam(path)
    assert model.cfg == SemanticSamConfig.from_dict(json.loads(str(golden["meta"]))["config"])
    assert report.missing == [] and report.unexpected == [] and len(report.skipped) == 3
    assert torch.equal(
        model.state_dict()["sem_seg_head.predictor.mask_tokens.weight"],
        state["sem_seg_head.predictor.mask_tokens.weight"],
    )

    del state["sem_seg_head.predictor.iou_prediction_head.layers.0.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="broken.pth: not a complete Semantic-SAM checkpoint, 1 keys missing"):
        build_semantic_sam(tmp_path / "broken.pth")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: not a Semantic-SAM state dict"):
        build_semantic_sam(tmp_path / "other.pth")


def golden_differences(port, golden, image) -> dict[str, float]:
    """Max abs difference port - official of the encoder outputs and the decoder's masks and IoU scores."""
    with torch.no_grad():
        features = port.encode(image)
        masks, iou = port.predict_points(features, torch.from_numpy(golden["decoder_points"]), upsample=True)
    encoder = [np.abs(features.mask_features.numpy() - golden["encoder_mask_features"]).max()]
    encoder += [np.abs(x.numpy() - golden[f"encoder_level{i}"]).max() for i, x in enumerate(features.multi_scale)]
    return {
        "encoder": float(max(encoder)),
        "decoder_masks": float(np.abs(masks.numpy()[:, ::2, ::2] - golden["decoder_masks"]).max()),
        "decoder_ious": float(np.abs(iou.numpy() - golden["decoder_ious"].reshape(-1)).max()),
    }


# Simulated porting bugs, each invisible under the official default initialisation (zero box refinement,
# zero offset / attention-weight layers, identity norms), so the fixture's fully random weights must
# expose them. Each patches our port through ``monkeypatch`` (undone after the test); submodules are
# swapped in ``_modules`` because monkeypatch restores instance attributes from ``__dict__`` only.
def no_box_refinement(port, monkeypatch):
    refine = port.sem_seg_head.predictor._bbox_embed  # shared by every decoder layer
    monkeypatch.setattr(refine, "forward", lambda x: x.new_zeros(*x.shape[:-1], 4))


def decoder_norm_applied_once(port, monkeypatch):
    monkeypatch.setitem(port.sem_seg_head.predictor.decoder._modules, "norm", torch.nn.Identity())


def swap_norm1_norm2(layers, monkeypatch):
    for layer in layers:
        norm1, norm2 = layer.norm1, layer.norm2
        monkeypatch.setitem(layer._modules, "norm1", norm2)
        monkeypatch.setitem(layer._modules, "norm2", norm1)


def deform_attns(port):
    return [m for m in port.modules() if isinstance(m, MSDeformAttn)]


def offsets_ignore_query(port, monkeypatch):
    for attn in deform_attns(port):
        linear = attn.sampling_offsets
        monkeypatch.setattr(linear, "forward", lambda q, linear=linear: linear.bias.expand(*q.shape[:-1], -1))


def uniform_attention_weights(port, monkeypatch):
    for attn in deform_attns(port):
        linear = attn.attention_weights
        monkeypatch.setattr(linear, "forward", lambda q, linear=linear: q.new_zeros(*q.shape[:-1], linear.out_features))


MUTATIONS = {  # name -> (patch, whether the encoder outputs change too)
    "no box refinement": (no_box_refinement, False),
    "decoder norm applied once": (decoder_norm_applied_once, False),
    "norm1/norm2 swapped in decoder": (
        lambda port, mp: swap_norm1_norm2(port.sem_seg_head.predictor.decoder.layers, mp),
        False,
    ),
    "norm1/norm2 swapped in encoder": (
        lambda port, mp: swap_norm1_norm2(port.sem_seg_head.pixel_decoder.transformer.encoder.layers, mp),
        True,
    ),
    "offsets ignore the query": (offsets_ignore_query, True),
    "uniform attention weights": (uniform_attention_weights, True),
}


def test_unmutated_port_is_within_tolerance(port, golden, image):
    diffs = golden_differences(port, golden, image)
    assert max(diffs.values()) <= TOL, diffs


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_golden_comparison_catches_porting_bug(port, golden, image, monkeypatch, mutation):
    patch, changes_encoder = MUTATIONS[mutation]
    patch(port, monkeypatch)
    diffs = golden_differences(port, golden, image)
    assert diffs["decoder_masks"] > 100 * TOL, diffs  # far outside the tolerance, not a rounding effect
    if changes_encoder:
        assert diffs["encoder"] > 100 * TOL, diffs
    else:  # the bug is where we put it: the encoder still matches
        assert diffs["encoder"] <= TOL, diffs
