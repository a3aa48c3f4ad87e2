"""Hungarian matcher against brute force; criterion edge cases; per-class targets."""

from __future__ import annotations

import itertools

import pytest
import torch

from train.losses.combo_criterion import SetCriterion
from train.losses.matcher import HungarianMatcher
from train.losses.targets import masks_to_targets


def brute_force_cost(pred_logits, pred_masks, labels, masks) -> torch.Tensor:
    """Hand-written cost: 2 * (-p(class)) + 5 * mean BCE + 5 * dice over all pixels, [Q, n]."""
    probs = pred_logits.softmax(-1)
    cost = torch.zeros(pred_logits.shape[0], labels.shape[0], dtype=torch.float64)
    for q in range(pred_logits.shape[0]):
        for k in range(labels.shape[0]):
            s = pred_masks[q].flatten().double().sigmoid()
            t = masks[k].flatten().double()
            bce = -(t * s.log() + (1 - t) * (1 - s).log()).mean()
            dice = 1 - (2 * (s * t).sum() + 1) / (s.sum() + t.sum() + 1)
            cost[q, k] = 2 * -probs[q, labels[k]] + 5 * bce + 5 * dice
    return cost


@pytest.mark.parametrize("seed,num_queries,num_targets", [(0, 4, 2), (1, 5, 3), (2, 3, 3), (3, 6, 1)])
def test_matcher_matches_brute_force(seed: int, num_queries: int, num_targets: int) -> None:
    torch.manual_seed(seed)
    pred_logits = torch.randn(1, num_queries, 4)
    pred_masks = torch.randn(1, num_queries, 6, 6)
    labels = torch.randint(0, 3, (num_targets,))
    masks = (torch.rand(num_targets, 6, 6) > 0.5).float()
    matcher = HungarianMatcher(2, 5, 5, num_points=None)
    ((rows, cols),) = matcher(pred_logits, pred_masks, [{"labels": labels, "masks": masks}])
    cost = brute_force_cost(pred_logits[0], pred_masks[0], labels, masks)
    best = min(
        sum(cost[q, k].item() for k, q in enumerate(perm))
        for perm in itertools.permutations(range(num_queries), num_targets)
    )
    assert len(rows) == num_targets
    assert abs(cost[rows, cols].sum().item() - best) < 1e-5


def test_matcher_cost_equals_hand_written_cost() -> None:
    torch.manual_seed(4)
    pred_logits, pred_masks = torch.randn(3, 4), torch.randn(3, 5, 5)
    labels, masks = torch.tensor([0, 2]), (torch.rand(2, 5, 5) > 0.5).float()
    cost = HungarianMatcher(num_points=None).cost_matrix(pred_logits, pred_masks, labels, masks)
    assert torch.allclose(cost.double(), brute_force_cost(pred_logits, pred_masks, labels, masks), atol=1e-5)


def test_masks_to_targets_binary_and_ignore() -> None:
    gt = torch.tensor([[0, 1], [255, 1]])
    targets = masks_to_targets(gt, num_classes=2)
    assert targets["labels"].tolist() == [0, 1]
    assert targets["masks"].tolist() == [[[1, 0], [0, 0]], [[0, 1], [0, 1]]]
    assert masks_to_targets(torch.full((2, 2), 255), 2)["labels"].numel() == 0
    with pytest.raises(ValueError, match="outside 0..1"):
        masks_to_targets(torch.tensor([[0, 3]]), num_classes=2)


def test_criterion_empty_targets_finite_and_no_object() -> None:
    torch.manual_seed(0)
    criterion = SetCriterion(2, HungarianMatcher(num_points=64), num_points=64)
    pred_logits = torch.randn(2, 4, 3, requires_grad=True)
    pred_masks = torch.randn(2, 4, 8, 8, requires_grad=True)
    empty = {"labels": torch.empty(0, dtype=torch.int64), "masks": torch.empty(0, 16, 16)}
    losses = criterion(pred_logits, pred_masks, [empty, empty])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["bce"].item() == 0.0 and losses["dice"].item() == 0.0
    sum(losses.values()).backward()
    # all queries are pushed towards no-object: CE equals mean -log p(no object)
    expected = -pred_logits.detach().log_softmax(-1)[..., -1].mean()
    assert torch.allclose(losses["ce"], expected, atol=1e-6)
