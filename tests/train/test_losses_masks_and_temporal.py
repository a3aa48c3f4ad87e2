"""Dice / BCE against hand-computed values, L_ada (COMBO eq. 6-7), point sampling."""

from __future__ import annotations

import math

import torch

from train.losses.mask_losses import (
    dice_loss,
    pairwise_dice_cost,
    pairwise_sigmoid_bce_cost,
    point_sample,
    sigmoid_bce_loss,
    uncertain_point_coords,
)
from train.losses.temporal import adaptive_inter_frame_loss


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_dice_hand_computed() -> None:
    # probabilities (0.8, 0.2, 0.5) against targets (1, 0, 1):
    # 1 - (2*(0.8+0.5) + 1) / ((0.8+0.2+0.5) + 2 + 1) = 1 - 3.6/4.5 = 0.2
    logits = torch.tensor([[logit(0.8), logit(0.2), logit(0.5)]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    assert math.isclose(dice_loss(logits, targets, 1).item(), 0.2, rel_tol=1e-6)
    # two identical masks normalised by 4 masks -> 2*0.2/4
    assert math.isclose(dice_loss(logits.repeat(2, 1), targets.repeat(2, 1), 4).item(), 0.1, rel_tol=1e-6)
    assert math.isclose(pairwise_dice_cost(logits, targets).item(), 0.2, rel_tol=1e-6)


def test_bce_hand_computed() -> None:
    logits = torch.tensor([[logit(0.8), logit(0.2)]])
    targets = torch.tensor([[1.0, 1.0]])
    expected = (-math.log(0.8) - math.log(0.2)) / 2
    assert math.isclose(sigmoid_bce_loss(logits, targets, 1).item(), expected, rel_tol=1e-6)
    assert math.isclose(pairwise_sigmoid_bce_cost(logits, targets).item(), expected, rel_tol=1e-6)


def test_adaptive_inter_frame_loss_hand_computed() -> None:
    # video 0: frames (1,0), (1,1), (0,1): cos = 1/sqrt2 twice; video 1: identical frames, cos = 1
    masks = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [[2.0, 3.0], [2.0, 3.0], [4.0, 6.0]]]).view(
        2, 3, 1, 1, 2
    )
    pair = 1 - 1 / math.sqrt(2)
    expected = (2 * math.exp(-pair) * pair + 0.0 + 0.0) / 4  # mean over 2 videos x 2 pairs
    assert math.isclose(adaptive_inter_frame_loss(masks).item(), expected, rel_tol=1e-6)


def test_adaptive_weight_is_not_detached() -> None:
    masks = torch.tensor([[[1.0, 0.0], [0.3, 1.0]]], requires_grad=True)
    adaptive_inter_frame_loss(masks).backward()
    # gradient of exp(-L) L with respect to L is exp(-L)(1 - L), not exp(-L) (detached weight)
    manual = masks.detach().clone().requires_grad_(True)
    loss_value = 1 - torch.nn.functional.cosine_similarity(manual[:, 0], manual[:, 1], dim=-1)
    (torch.exp(-loss_value) * loss_value).sum().backward()
    assert torch.allclose(masks.grad, manual.grad)
    detached = masks.detach().clone().requires_grad_(True)
    loss_value = 1 - torch.nn.functional.cosine_similarity(detached[:, 0], detached[:, 1], dim=-1)
    (torch.exp(-loss_value).detach() * loss_value).sum().backward()
    assert not torch.allclose(masks.grad, detached.grad)


def test_adaptive_loss_single_frame_is_zero() -> None:
    assert adaptive_inter_frame_loss(torch.randn(2, 1, 3, 4, 4)).item() == 0.0


def test_point_sample_pixel_centres_and_importance_sampling() -> None:
    image = torch.arange(12.0).view(1, 1, 3, 4)
    coords = torch.tensor([[[0.125, 1 / 6], [0.875, 5 / 6]]])
    assert torch.allclose(point_sample(image, coords), torch.tensor([[[0.0, 11.0]]]), atol=1e-5)
    torch.manual_seed(0)
    logits = torch.full((2, 1, 8, 8), 10.0)
    logits[:, :, :, 4:] = 0.0  # uncertain half (x >= 0.5)
    picked = uncertain_point_coords(logits, num_points=40, oversample_ratio=3, importance_sample_ratio=0.75)
    assert picked.shape == (2, 40, 2)
    assert (picked[:, :30, 0] >= 0.5 - 1 / 16).all()  # the 30 important points lie in the uncertain half
