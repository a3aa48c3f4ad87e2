"""COMBO's criterion: the set criterion of Mask2Former as COMBO uses it (paper eq. 8 without the temporal term).

Per decoder layer (deep supervision): Hungarian matching, then
  L_cls  = cross-entropy over K+1 classes for every query (unmatched -> no object, weight 0.1),
  L_bce, L_dice on importance-sampled points of the matched masks (uncertainty sampling:
           oversample 3, importance 0.75), normalised by the number of target masks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from train.losses.mask_losses import dice_loss, point_sample, sigmoid_bce_loss, uncertain_point_coords
from train.losses.matcher import HungarianMatcher


class SetCriterion(nn.Module):
    """Mask-classification losses for one set of predictions.

    Args:
        num_classes: K object classes (the logits have K + 1 columns).
        matcher: a ``HungarianMatcher``.
        no_object_weight: CE weight of the no-object class (0.1).
        num_points, oversample_ratio, importance_sample_ratio: point sampling (12544, 3, 0.75).

    forward(pred_logits [N,Q,K+1], pred_masks [N,Q,h,w], targets: N dicts (see train.losses.targets.masks_to_targets))
        -> {"ce": scalar, "bce": scalar, "dice": scalar} (unweighted).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = no_object_weight
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(
        self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        indices = self.matcher(pred_logits, pred_masks, targets)
        num_masks = max(sum(len(t["labels"]) for t in targets), 1)

        # Classification: every query, unmatched ones labelled "no object" (index K).
        target_classes = torch.full(
            pred_logits.shape[:2], self.num_classes, dtype=torch.int64, device=pred_logits.device
        )
        for frame, ((query_index, target_index), target) in enumerate(zip(indices, targets)):
            target_classes[frame, query_index.to(pred_logits.device)] = target["labels"][target_index]
        ce = F.cross_entropy(
            pred_logits.float().transpose(1, 2), target_classes, self.class_weight.to(pred_logits.device)
        )

        # Masks of matched pairs, on importance-sampled points.
        frame_index = torch.cat([torch.full_like(q, f) for f, (q, _) in enumerate(indices)])
        query_index = torch.cat([q for q, _ in indices])
        if query_index.numel() == 0:
            zero = pred_masks.sum() * 0.0
            return {"ce": ce, "bce": zero, "dice": zero}
        predicted = pred_masks[frame_index.to(pred_masks.device), query_index.to(pred_masks.device)].float()
        target_masks = torch.cat([t["masks"][k] for t, (_, k) in zip(targets, indices)]).to(predicted)
        with torch.no_grad():
            coords = uncertain_point_coords(
                predicted[:, None], self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_targets = point_sample(target_masks[:, None], coords)[:, 0]
        point_logits = point_sample(predicted[:, None], coords)[:, 0]
        return {
            "ce": ce,
            "bce": sigmoid_bce_loss(point_logits, point_targets, num_masks),
            "dice": dice_loss(point_logits, point_targets, num_masks),
        }


__all__ = ["SetCriterion"]
