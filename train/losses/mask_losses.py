"""Mask losses (dice, sigmoid BCE), their pairwise matching costs, and point sampling.

Mask2Former computes mask losses on sampled points instead of full masks (Sec. 3.3 of
Cheng et al. 2022); COMBO eq. 8 uses L_mask = L_bce + L_dice with lambda_mask = 5 on those points.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss (Milletari et al.) summed over masks and divided by ``num_masks``.

    L_dice(m) = 1 - (2 * sum_p s_p t_p + 1) / (sum_p s_p + sum_p t_p + 1), s = sigmoid(logits).

    Args:
        logits: [K, P] mask logits (P points or pixels per mask).
        targets: [K, P] binary targets in {0, 1} (float).
        num_masks: normaliser (number of ground-truth masks in the batch, >= 1).
    Returns:
        scalar tensor.
    """
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over points, summed over masks, / ``num_masks``.

    Args: logits, targets [K, P]; num_masks >= 1. Returns a scalar tensor.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def pairwise_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss between every prediction and every target: logits [Q,P], targets [K,P] -> [Q,K]."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE between every prediction and every target: logits [Q,P], targets [K,P] -> [Q,K]."""
    num_points = logits.shape[1]
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = positive @ targets.T + negative @ (1 - targets).T
    return cost / num_points


def point_sample(inputs: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``inputs`` [N,C,H,W] at ``point_coords`` [N,P,2] (x, y in [0,1])
    -> [N,C,P] (align_corners=False, zero outside)."""
    grid = 2.0 * point_coords.unsqueeze(2) - 1.0  # [N,P,1,2]
    return F.grid_sample(inputs, grid.to(inputs.dtype), mode="bilinear", align_corners=False).squeeze(3)


def logit_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of a mask logit: -|logit| (largest near the decision boundary). [N,1,P]->[N,1,P]."""
    return -logits.abs()


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    uncertainty_fn: Callable[[torch.Tensor], torch.Tensor] = logit_uncertainty,
) -> torch.Tensor:
    """Mask2Former / PointRend importance sampling of point coordinates.

    Draws ``oversample_ratio * num_points`` random points, keeps the
    ``importance_sample_ratio * num_points`` most uncertain ones, and fills the rest uniformly.

    Args:
        logits: [N,1,H,W] mask logits (no gradient needed).
    Returns:
        coords [N, num_points, 2] in [0, 1].
    """
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(n, num_sampled, 2, device=logits.device)
    uncertainty = uncertainty_fn(point_sample(logits, coords))  # [N,1,S]
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    index = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]
    selected = torch.gather(coords, 1, index[..., None].expand(-1, -1, 2))
    if num_random > 0:
        selected = torch.cat([selected, torch.rand(n, num_random, 2, device=logits.device)], dim=1)
    return selected


__all__ = [
    "dice_loss",
    "logit_uncertainty",
    "pairwise_dice_cost",
    "pairwise_sigmoid_bce_cost",
    "point_sample",
    "sigmoid_bce_loss",
    "uncertain_point_coords",
]
