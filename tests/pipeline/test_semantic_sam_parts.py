"""Parts of the Semantic-SAM port checked on their own: its deformable attention is the shared module
(tested in test_nn_ms_deform_attn.py), the generator's post-processing helpers, settings, and the
``semantic_sam`` backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.hashing import file_sha256
from pipeline.nn import MSDeformAttn
from pipeline.params import ParamsError
from pipeline.proposals.backends import build_backend
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.sam_models import ProposalModelError
from pipeline.proposals.semantic_sam import TINY, SemanticSam, SemanticSamGeneratorSettings
from pipeline.proposals.semantic_sam.generator import masks_to_boxes, point_grid, remove_small_regions, stability_score


def test_encoder_and_decoder_use_the_shared_deformable_attention():
    with torch.device("meta"):
        model = SemanticSam(TINY)
    encoder = model.sem_seg_head.pixel_decoder.transformer.encoder.layers
    decoder = model.sem_seg_head.predictor.decoder.layers
    assert all(isinstance(layer.self_attn, MSDeformAttn) for layer in encoder)
    assert all(isinstance(layer.cross_attn, MSDeformAttn) for layer in decoder)
    assert sum(isinstance(m, MSDeformAttn) for m in model.modules()) == len(encoder) + len(decoder)


def test_point_grid_is_row_major_cell_centres():
    grid = point_grid(4)
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(
        grid[:5], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125], [0.875, 0.125], [0.125, 0.375]]
    )


def test_small_regions_holes_islands_and_largest_kept():
    mask = np.zeros((12, 12), bool)
    mask[1:9, 1:9] = True
    mask[4, 4] = False  # 1-pixel hole
    mask[10:12, 10:12] = True  # 4-pixel island, touching diagonally nothing
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[4, 4] and filled.sum() == mask.sum() + 1
    cleaned, changed = remove_small_regions(filled, 5, "islands")
    assert changed and not cleaned[10:, 10:].any() and cleaned[1:9, 1:9].all()
    tiny = np.zeros((6, 6), bool)
    tiny[0, 0] = tiny[3:5, 3:5] = True  # every island small: the largest survives
    kept, changed = remove_small_regions(tiny, 10, "islands")
    assert changed and kept.sum() == 4 and kept[3:5, 3:5].all()
    diag = np.eye(4, dtype=bool)  # 8-connected: one region of 4 pixels, not small at min_area 4
    out, changed = remove_small_regions(diag, 4, "islands")
    assert not changed and np.array_equal(out, diag)


def test_boxes_and_stability():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert masks_to_boxes(masks).tolist() == [[2, 1, 4, 2], [0, 0, 0, 0]]
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -2.0]]])
    assert stability_score(logits, 0.0, 1.0).tolist() == [pytest.approx(1 / 3)]


def test_settings_are_validated():
    assert SemanticSamGeneratorSettings(level=(3, 1)).tokens == (0, 3)
    with pytest.raises(ValueError, match="level"):
        SemanticSamGeneratorSettings(level=(7,))
    with pytest.raises((ValueError, ParamsError), match="level"):
        ProposalParams(backend="semantic_sam", semantic_sam={"level": [0]})
    with pytest.raises((ValueError, ParamsError), match="precision"):
        ProposalParams(backend="semantic_sam", semantic_sam={"precision": "int8"})


def test_backend_runs_the_port_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = SemanticSam(TINY)
    with torch.no_grad():  # decisive masks and scores from random weights
        model.sem_seg_head.predictor.mask_embed.layers[-1].weight.mul_(256)
        model.sem_seg_head.predictor.iou_prediction_head.layers[-1].bias.fill_(1.0)
    ckpt = tmp_path / "tiny_many2many.pth"
    torch.save({"model": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    params = ProposalParams(
        backend="semantic_sam",
        checkpoint=str(ckpt),
        semantic_sam={
            "device": "cpu",
            "points_per_side": 4,
            "points_per_batch": 8,
            "stability_score_thresh": 0.5,
            "image_short_side": 64,
        },
    )
    backend = build_backend("semantic_sam", params)
    assert backend.checkpoint_sha256 == file_sha256(ckpt)
    frame = np.zeros((48, 80, 3), np.uint8)
    frame[10:40, 10:50] = (220, 40, 40)
    proposals = backend.propose(frame)
    assert proposals.masks.shape[1:] == (48, 80) and proposals.masks.dtype == bool
    assert len(proposals.masks) >= 1 and proposals.masks.reshape(len(proposals.masks), -1).any(1).all()
    assert (proposals.scores > 0.88).all()
    assert "semantic_sam_port_version" in params.model_settings()

    torch.save({"model": {"model.backbone.patch_embed.proj.weight": torch.zeros(3)}}, tmp_path / "bad.pth")
    with pytest.raises(ProposalModelError, match="bad.pth: not a Semantic-SAM state dict"):
        build_backend("semantic_sam", ProposalParams(backend="semantic_sam", checkpoint=str(tmp_path / "bad.pth")))
