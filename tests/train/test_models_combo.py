"""COMBO model: registry-wide interface checks, BFM, parameter counts, overfitting a tiny batch."""

from __future__ import annotations

import warnings

import pytest
import torch

from train.models import build_model, list_models
from train.models.combo import COMBO, BilateralFusion, official_query_audio

COMBO_MODELS = [name for name in list_models() if name.startswith("combo_")]
# The paper-size configs take seconds per forward on CPU; they are covered by the parameter-count test.
FAST_COMBO = {
    "combo_tiny": dict(),
    "combo_mnv2": dict(pretrained=None, num_points=64),
}


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/train/conftest.py


def small_model(name: str, **overrides) -> COMBO:
    torch.manual_seed(0)
    return build_model(name, **{**FAST_COMBO[name], **overrides})


def make_batch(model: COMBO, b: int = 2, t: int = 3, size: int = 32, audio_dim: int | None = None) -> dict:
    audio_dim = audio_dim or model.bilateral_fusion.audio_norm.normalized_shape[0]
    masks = torch.randint(0, model.num_classes, (b, t, size, size))
    return {
        "frames": torch.randn(b, t, 3, size, size),
        "maskiges": torch.randn(b, t, 3, size, size),
        "audio": torch.randn(b, t, audio_dim),
        "masks": masks,
        "labelled": torch.zeros(b, t, dtype=torch.bool).index_fill_(1, torch.tensor([0]), True),
    }


def test_registry_has_combo_configs() -> None:
    assert {"combo_r50", "combo_pvt_b5", "combo_mnv2", "combo_tiny"} <= set(COMBO_MODELS)
    assert set(FAST_COMBO) <= set(COMBO_MODELS)


@pytest.mark.parametrize("name", sorted(FAST_COMBO))
@pytest.mark.parametrize("num_classes", [2, 71])
def test_forward_shapes_and_predict(name: str, num_classes: int) -> None:
    model = small_model(name, num_classes=num_classes)
    batch = make_batch(model)
    outputs = model(batch)
    q = model.decoder.query_feat.num_embeddings
    assert outputs["pred_logits"].shape == (2, 3, q, num_classes + 1)
    assert outputs["pred_masks"].shape == (2, 3, q, 8, 8)
    assert len(outputs["aux_outputs"]) == model.decoder.num_layers
    probs = model.predict(outputs, size=(32, 32))
    if num_classes == 2:
        assert model.task == "binary"
        assert probs.shape == (2, 3, 32, 32) and probs.min() >= 0 and probs.max() <= 1
    else:
        assert model.task == "semantic" and model.num_classes == 71
        assert probs.shape == (2, 3, 71, 32, 32)
    losses = model.compute_losses(outputs, batch)
    assert {"ce", "bce", "dice", "ada", "total"} <= set(losses)
    assert torch.allclose(losses["total"], losses["ce"] + losses["bce"] + losses["dice"] + losses["ada"])


@pytest.mark.parametrize("name", sorted(FAST_COMBO))
def test_backward_reaches_every_trainable_parameter(name: str) -> None:
    model = small_model(name)
    batch = make_batch(model)
    model.compute_losses(model(batch), batch)["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_frozen_vggish_stays_frozen_and_out_of_optimizer() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VGGish without weights
        model = small_model("combo_tiny", audio_encoder="vggish", audio_dim=128)
    batch = make_batch(model, b=1, t=2)
    batch.pop("audio")
    batch["logmel"] = torch.randn(1, 2, 96, 64)
    before = {n: p.clone() for n, p in model.audio_encoder.named_parameters()}
    model.train()
    assert not model.audio_encoder.training
    model.compute_losses(model(batch), batch)["total"].backward()
    assert all(p.grad is None for p in model.audio_encoder.parameters())
    groups = model.parameter_groups()
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in in_groups for p in model.audio_encoder.parameters())
    optimizer = torch.optim.AdamW(groups)
    optimizer.step()
    assert all(torch.equal(before[n], p) for n, p in model.audio_encoder.named_parameters())


@pytest.mark.parametrize("name", sorted(FAST_COMBO))
def test_empty_ground_truth_and_silent_audio_are_finite(name: str) -> None:
    model = small_model(name)
    batch = make_batch(model)
    batch["audio"].zero_()
    batch["masks"].fill_(255)  # nothing labelled in any frame
    batch["labelled"].fill_(True)
    losses = model.compute_losses(model(batch), batch)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    batch["labelled"].fill_(False)  # no labelled frame: only the consistency term remains
    losses = model.compute_losses(model(batch), batch)
    assert losses["ce"].item() == 0.0 and torch.isfinite(losses["total"])


def test_parameter_groups() -> None:
    model = small_model("combo_tiny")
    groups = model.parameter_groups(lr=1e-4, weight_decay=0.05, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone_decay"]["lr"] == pytest.approx(1e-5)
    assert by_name["head_decay"]["lr"] == pytest.approx(1e-4)
    assert all(g["weight_decay"] == 0.0 for n, g in by_name.items() if n.endswith("no_decay"))
    no_decay = {id(p) for n, g in by_name.items() if n.endswith("no_decay") for p in g["params"]}
    for param in (
        model.decoder.query_feat.weight,
        model.decoder.query_embed.weight,
        model.bilateral_fusion.audio_pos_embed,
        model.bilateral_fusion.visual_gamma,
        model.pixel_decoder.level_embed,
    ):
        assert id(param) in no_decay
    assert id(model.decoder.class_embed.weight) not in no_decay
    total = sum(p.numel() for g in groups for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_paper_pairing_gives_each_frame_its_own_audio() -> None:
    """official_query_audio=False: every query of frame t receives frame t's audio, so changing the
    audio of frame 1 only changes the outputs of frame 1."""
    model = small_model("combo_tiny", bfm_layer_scale=1.0, official_query_audio=False).eval()
    batch = make_batch(model, b=1, t=3)
    with torch.no_grad():
        reference = model(batch)["pred_logits"]
        batch["audio"][0, 1] += torch.randn_like(batch["audio"][0, 1])  # not a constant: LayerNorm removes those
        changed = model(batch)["pred_logits"]
    assert torch.allclose(reference[0, 0], changed[0, 0]) and torch.allclose(reference[0, 2], changed[0, 2])
    assert not torch.allclose(reference[0, 1], changed[0, 1])


def test_official_pairing_reproduces_the_reshape_of_the_official_decoder() -> None:
    """transformer_decoder.py:437: audio [N,1,C] repeated to [N,Q,C] and reshaped to [Q,N,C]."""
    n, q, c = 3, 8, 4
    audio = torch.randn(n, 1, c)
    official = audio.repeat(1, q, 1).reshape(q, -1, c).transpose(0, 1)  # [N,Q,C] as the decoder adds it
    assert torch.equal(official_query_audio(audio, q), official)
    frames = official_query_audio(torch.arange(n, dtype=torch.float32).view(n, 1, 1), q)[..., 0]
    assert frames[1].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # frame 1's queries mostly get other frames' audio


def test_bfm_uses_the_same_logits_in_both_directions() -> None:
    torch.manual_seed(0)
    bfm = BilateralFusion(visual_dim=16, audio_dim=8, embed_dim=16, num_heads=4, max_audio_tokens=3)
    visual, audio = torch.randn(2, 16, 4, 5), torch.randn(2, 3, 8)
    fused_visual, fused_audio, attention = bfm(visual, audio, return_attention=True)
    logits = attention["logits"]
    assert logits.shape == (2, 4, 20, 3)
    # official: both directions are softmaxes over the pixels (fuse_helper.py:202-203)
    assert torch.allclose(attention["visual_attention"], logits.softmax(-2))
    assert torch.allclose(attention["audio_attention"], logits.transpose(-1, -2).softmax(-1))
    # official: the update is added to the normalised features; layer scale starts at 1e-4
    normed = bfm.visual_norm((visual + bfm.level_embed[0].view(1, -1, 1, 1)).flatten(2).transpose(1, 2))
    assert (fused_visual.flatten(2).transpose(1, 2) - normed).abs().max() < 1e-2
    assert (fused_audio - bfm.audio_norm(audio)).abs().max() < 1e-2
    paper = BilateralFusion(visual_dim=16, audio_dim=8, embed_dim=16, num_heads=4, max_audio_tokens=3, official=False)
    paper_visual, paper_audio, paper_attention = paper(visual, audio, return_attention=True)
    assert torch.allclose(paper_attention["visual_attention"], paper_attention["logits"].softmax(-1))
    assert (paper_visual - visual).abs().max() < 1e-2 and (paper_audio - audio).abs().max() < 1e-2
    # logits are computed once: the two projections that make them are each called once
    calls = []
    hooks = [
        bfm.query_proj.register_forward_hook(lambda *a: calls.append("q")),
        bfm.key_proj.register_forward_hook(lambda *a: calls.append("k")),
    ]
    bfm(visual, audio)
    for hook in hooks:
        hook.remove()
    assert calls == ["q", "k"]


@pytest.mark.parametrize("shared,expected_millions", [(False, 158.9), (True, 135.5)])
def test_r50_parameter_count_matches_paper_table_4(shared: bool, expected_millions: float) -> None:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = build_model("combo_r50", shared_backbone=shared)
    assert model.audio_encoder is not None  # VGGish is counted, as in the paper
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - expected_millions) / expected_millions < 0.03, count


def test_paper_config_values() -> None:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = build_model("combo_r50", num_classes=71)
    assert model.decoder.num_layers == 9 and model.decoder.query_feat.num_embeddings == 100
    assert len(model.pixel_decoder.layers) == 6
    assert [layer.out_features for layer in model.audio_mlp.layers] == [4096, 4096, 256]
    assert model.lambda_ada == 5.0 and model.task == "semantic"
    assert model.criterion.class_weight.shape == (72,)


def test_tiny_model_overfits_two_clips() -> None:
    torch.manual_seed(0)
    # Uniform point sampling: importance sampling keeps 75% of the points on mask boundaries, where
    # 1/4-resolution mask logits cannot become sharp within a few steps.
    model = build_model("combo_tiny", importance_sample_ratio=0.0)
    size, t = 32, 2
    masks = torch.zeros(2, t, size, size, dtype=torch.int64)
    masks[0, :, 4:20, 8:24] = 1
    masks[1, :, 12:28, 8:28] = 1
    frames = torch.randn(2, t, 3, size, size) * 0.1 + 2 * masks[:, :, None].float()
    batch = {
        "frames": frames,
        "maskiges": frames.clone(),
        "audio": torch.randn(2, t, 16),
        "masks": masks,
        "labelled": torch.ones(2, t, dtype=torch.bool),
    }
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=1e-2, backbone_lr_mult=1.0))
    first = None
    for _ in range(40):
        losses = model.compute_losses(model(batch), batch)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        first = first if first is not None else losses["total"].item()
    assert losses["total"].item() < first / 10, (first, losses["total"].item())


@pytest.mark.parametrize(
    "alias,target,kwargs", [("combo", "combo_mnv2", {"pretrained": None}), ("transavs", "transavs_mnv2", {})]
)
def test_short_aliases_build_the_cpu_configs(alias, target, kwargs):
    def count(model):
        return sum(p.numel() for p in model.parameters())

    assert count(build_model(alias, num_classes=2, audio_dim=16, **kwargs)) == count(
        build_model(target, num_classes=2, audio_dim=16, **kwargs)
    )
