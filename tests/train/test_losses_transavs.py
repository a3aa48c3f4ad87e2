"""TransAVS losses against hand-computed values (paper eq. 9-13, 18) and the focal loss [29]."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses.focal import sigmoid_focal_loss, softmax_focal_loss
from train.losses.transavs_losses import (
    TransAVSCriterion,
    TransAVSLossConfig,
    aqdl_loss,
    aqml_loss,
    confidence_threshold,
    object_segments,
)


# ---------------------------------------------------------------------------- eq. 18
@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.55),
        (4999, 0.55),
        (5000, 0.55 + 0.1 / 18),
        (12345, 0.55 + 2 * 0.1 / 18),
        (45000, 0.60),
        (90000, 0.65),
        (250000, 0.65),
    ],
)
def test_threshold_schedule_eq18(step: int, expected: float) -> None:
    assert confidence_threshold(step) == pytest.approx(expected, abs=1e-12)


def test_threshold_schedule_rejects_negative_step() -> None:
    with pytest.raises(ValueError, match="step"):
        confidence_threshold(-1)


# ---------------------------------------------------------------------------- eq. 9-10
def test_aqdl_hand_computed() -> None:
    # h(q): (0,0), (0.5,0), (3,0): squared distances 0.25, 9, 6.25; only the first is < d0 = 1.
    projected = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [3.0, 0.0]]])
    everyone = torch.ones(1, 3, dtype=torch.bool)
    # eq. 9: 2 / (n(n+1)) = 2/12 times d = 1 / 0.25 = 4
    assert float(aqdl_loss(projected, everyone, d0=1.0)) == pytest.approx(4.0 / 6.0, rel=1e-6)
    # d0 = 7: the pair at 6.25 also counts: (4 + 1/6.25) / 6
    assert float(aqdl_loss(projected, everyone, d0=7.0)) == pytest.approx((4.0 + 0.16) / 6.0, rel=1e-6)
    # two frames: frame 0 = {0,1} (2/6 * 4), frame 1 = {0} (empty sum) -> mean over frames
    per_frame = torch.tensor([[True, True, False], [True, False, False]])
    two_frames = projected.expand(2, -1, -1)
    assert float(aqdl_loss(two_frames, per_frame, d0=1.0)) == pytest.approx((4.0 / 3.0 + 0.0) / 2, rel=1e-6)


def test_aqdl_gradient_pushes_close_queries_apart() -> None:
    projected = torch.tensor([[[0.0, 0.0], [0.5, 0.0]]], requires_grad=True)
    aqdl_loss(projected, torch.ones(1, 2, dtype=torch.bool)).backward()
    # d/dx 1/x^2 at x = 0.5, times 2/(2*3): the first query is pushed left, the second right
    assert projected.grad[0, 0, 0] > 0 and projected.grad[0, 1, 0] < 0


@pytest.mark.parametrize("selected", [[False, False, False], [False, True, False]])
def test_aqdl_fewer_than_two_queries_is_zero(selected: list[bool]) -> None:
    projected = torch.randn(1, 3, 4, requires_grad=True)
    loss = aqdl_loss(projected, torch.tensor([selected]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(projected.grad).all()


def test_aqdl_identical_queries_stay_finite() -> None:
    projected = torch.ones(2, 5, 8, requires_grad=True)
    loss = aqdl_loss(projected, torch.ones(2, 5, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(projected.grad).all()


# ---------------------------------------------------------------------------- eq. 11-12
def test_aqml_hand_computed() -> None:
    m0 = [[0.9, 0.2], [0.6, 0.1]]  # Bin = [[1,0],[1,0]]
    m1 = [[0.8, 0.7], [0.3, 0.4]]  # Bin = [[1,1],[0,0]]
    masks = torch.tensor([[m0, m1]], requires_grad=True)  # [F=1, N=2, 2, 2]
    loss = aqml_loss(masks, torch.ones(1, 2, dtype=torch.bool))
    # Bin(m0).m1 = 0.8 + 0.3, m0.Bin(m1) = 0.9 + 0.2; I = 2.2 / (2*4); eq. 11 factor 2/(2*3)
    assert loss.item() == pytest.approx(2.2 / 8 / 3, rel=1e-6)
    loss.backward()
    # Bin is not differentiated: dL/dm1 = factor / (2HW) * Bin(m0)
    expected = torch.tensor([[1.0, 0.0], [1.0, 0.0]]) / 3 / 8
    assert torch.allclose(masks.grad[0, 1], expected)


def test_aqml_three_masks_and_frame_mean() -> None:
    ones, zeros = torch.ones(2, 2), torch.zeros(2, 2)
    half = torch.full((2, 2), 0.25)
    masks = torch.stack([torch.stack([ones, ones, half]), torch.stack([ones, zeros, half])])  # [2,3,2,2]
    selected = torch.tensor([[True, True, True], [True, True, False]])
    # frame 0: I(0,1) = 1, I(0,2) = (0.25*4 + 0)/8 = 0.125, I(1,2) = 0.125; factor 2/12
    # frame 1: I(0,1) = 0 (disjoint); factor 2/6
    assert float(aqml_loss(masks, selected)) == pytest.approx((1.25 / 6 + 0.0) / 2, rel=1e-6)


@pytest.mark.parametrize("count", [0, 1])
def test_aqml_fewer_than_two_queries_is_zero(count: int) -> None:
    masks = torch.rand(3, 4, 5, 5, requires_grad=True)
    selected = torch.zeros(3, 4, dtype=torch.bool)
    selected[:, :count] = True
    loss = aqml_loss(masks, selected)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(masks.grad).all()


# ---------------------------------------------------------------------------- focal [29]
def test_softmax_focal_hand_computed() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]] * 2)  # p = [0.25, 0.75]
    loss = softmax_focal_loss(logits, torch.tensor([1, 0]), alpha=0.25, gamma=2.0)
    assert float(loss[0]) == pytest.approx(-0.25 * 0.25**2 * math.log(0.75), rel=1e-6)
    assert float(loss[1]) == pytest.approx(-0.75 * 0.75**2 * math.log(0.25), rel=1e-6)
    # gamma = 0, no alpha: cross-entropy
    ce = softmax_focal_loss(logits, torch.tensor([1, 0]), alpha=None, gamma=0.0, reduction="sum")
    assert float(ce) == pytest.approx(-math.log(0.75) - math.log(0.25), rel=1e-6)
    # per-class alpha tensor
    weighted = softmax_focal_loss(logits, torch.tensor([1, 0]), alpha=torch.tensor([2.0, 3.0]), gamma=0.0)
    assert float(weighted[0]) == pytest.approx(-3 * math.log(0.75), rel=1e-6)


def test_sigmoid_focal_hand_computed() -> None:
    loss = sigmoid_focal_loss(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2.0)
    assert torch.allclose(loss, torch.tensor([0.25, 0.75]) * 0.25 * math.log(2.0))


def test_focal_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="targets"):
        softmax_focal_loss(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------------------- eq. 13 criterion
def _outputs(b: int = 1, t: int = 2, n: int = 4, k: int = 2, h: int = 4, requires_grad: bool = True):
    """Random outputs for K = k categories (k + 1 logits, the last = no object)."""
    torch.manual_seed(0)
    return {
        "pred_logits": torch.randn(b, t, n, k + 1, requires_grad=requires_grad),
        "pred_masks": torch.randn(b, t, n, h, h, requires_grad=requires_grad),
        "projected_queries": torch.randn(b, t, n, 3, requires_grad=requires_grad),
    }


def test_background_is_a_segment_and_unmatched_queries_are_no_object() -> None:
    """Choice 8: with a background and a foreground segment, two queries are matched (classes 0 and 1)
    and the others take "no object" (index K); a frame holding only 255 has no segment."""
    gt = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    gt[0, 0, :2] = 1
    masks = torch.full((1, 1, 3, 4, 4), -20.0)
    masks[0, 0, 0, :2] = 20.0  # query 0: the foreground
    masks[0, 0, 1, 2:] = 20.0  # query 1: the background
    logits = torch.log(torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])).view(1, 1, 3, 3)
    outputs = {"pred_logits": logits, "pred_masks": masks, "projected_queries": torch.zeros(1, 1, 3, 2)}
    losses = TransAVSCriterion(2)(outputs, {"masks": gt, "labelled": torch.ones(1, 1, dtype=torch.bool)})
    focal = -0.25 * 0.2**2 * math.log(0.8)  # every query has p_t = 0.8; alpha 0.25 for 0 and 1, 0.75 for K
    assert float(losses["class"]) == pytest.approx((2 * focal + 3 * focal) / 2, rel=1e-5)  # / 2 segments
    assert float(losses["dice"]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="outside"):
        TransAVSCriterion(2)(outputs, {"masks": gt * 5, "labelled": torch.ones(1, 1, dtype=torch.bool)})


def test_object_segments_split_sounding_classes_into_objects() -> None:
    gt = torch.zeros(20, 20, dtype=torch.long)
    gt[0:5, 0:5] = 3  # object A of class 3
    gt[10:16, 10:16] = 3  # object B of class 3
    gt[19, 0] = 3  # a speck: 1 px < 5 % of 36 px joins object B
    gt[0:4, 15:19] = 7  # class 7, one object
    gt[8, :] = 255
    segments = object_segments(gt, num_classes=71, min_fraction=0.05)
    assert segments["labels"].tolist() == [0, 3, 3, 7]
    areas = segments["masks"].sum((1, 2)).tolist()
    assert areas == [400 - 20 - 25 - 37 - 16, 25, 37, 16]
    assert segments["masks"].sum(0).max() == 1  # disjoint
    whole = TransAVSCriterion(71, TransAVSLossConfig(split_objects=False)).segments(gt)
    assert whole["labels"].tolist() == [0, 3, 7]


def test_criterion_total_is_eq13_and_only_labelled_frames_supervise() -> None:
    outputs = _outputs()
    gt = torch.zeros(1, 2, 8, 8, dtype=torch.long)
    gt[0, 0, 2:6, 2:6] = 1
    criterion = TransAVSCriterion(2)
    losses = criterion(outputs, {"masks": gt, "labelled": torch.tensor([[True, False]])}, step=5000)
    expected = 2 * losses["aqdl"] + 2 * losses["aqml"] + 5 * losses["class"] + 5 * losses["dice"]
    assert torch.allclose(losses["total"], expected)
    assert float(losses["delta"]) == pytest.approx(0.55 + 0.1 / 18)
    # changing the unlabelled frame's ground truth changes nothing supervised
    gt2 = gt.clone()
    gt2[0, 1] = 1
    losses2 = criterion(outputs, {"masks": gt2, "labelled": torch.tensor([[True, False]])}, step=5000)
    assert torch.equal(losses["class"], losses2["class"]) and torch.equal(losses["dice"], losses2["dice"])


def test_criterion_no_labelled_frames_and_empty_ground_truth() -> None:
    outputs = _outputs()
    gt = torch.full((1, 2, 8, 8), 255, dtype=torch.long)  # every pixel ignored: no segment at all
    for labelled in (torch.zeros(1, 2, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)):
        losses = TransAVSCriterion(2)(outputs, {"masks": gt, "labelled": labelled})
        assert all(torch.isfinite(v) for v in losses.values())
        assert losses["dice"].item() == 0.0
        losses["total"].backward()
        assert all(torch.isfinite(v.grad).all() for v in outputs.values())
        for v in outputs.values():
            v.grad = None


def test_criterion_class_loss_hand_computed() -> None:
    # one frame, 2 queries, binary, all foreground; query 1 matches the single segment (its mask is the target)
    logits = torch.log(torch.tensor([[[[0.1, 0.75, 0.15], [0.1, 0.25, 0.65]]]]))  # p_sounding = 0.75, 0.25
    gt = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    gt[0, 0, :2] = 1
    gt[0, 0, 2:] = 255
    masks = torch.full((1, 1, 2, 4, 4), -20.0)
    masks[0, 0, 1, :2] = 20.0  # query 1 has the perfect mask ...
    masks[0, 0, 0, :2, :1] = 20.0  # ... query 0 a poor one, but a better class score
    outputs = {"pred_logits": logits, "pred_masks": masks, "projected_queries": torch.zeros(1, 1, 2, 2)}
    losses = TransAVSCriterion(2)(outputs, {"masks": gt, "labelled": torch.ones(1, 1, dtype=torch.bool)})
    # cost: q0: 5*(-0.75) + 5*dice(4 of 8 px) ; q1: 5*(-0.25) + 5*~0 -> q1 matched (target 1), q0 -> no object
    fl_q1 = -0.25 * 0.75**2 * math.log(0.25)  # target 1, p_t = 0.25, alpha 0.25
    fl_q0 = -0.75 * 0.85**2 * math.log(0.15)  # target no object, p_t = 0.15, alpha 0.75
    assert float(losses["class"]) == pytest.approx(fl_q0 + fl_q1, rel=1e-5)
    assert float(losses["dice"]) == pytest.approx(0.0, abs=1e-6)


def test_criterion_ignores_255_pixels_in_dice() -> None:
    logits = torch.zeros(1, 1, 1, 4)
    masks = torch.full((1, 1, 1, 2, 2), -30.0)
    masks[0, 0, 0, 0, 0] = 30.0
    gt = torch.tensor([[[[1, 255], [255, 255]]]])
    outputs = {"pred_logits": logits, "pred_masks": masks, "projected_queries": torch.zeros(1, 1, 1, 2)}
    losses = TransAVSCriterion(3, TransAVSLossConfig())(
        outputs, {"masks": gt, "labelled": torch.ones(1, 1, dtype=torch.bool)}
    )
    assert float(losses["dice"]) == pytest.approx(0.0, abs=1e-6)  # perfect on the valid pixels
