"""Hungarian matching between predicted and ground-truth masks (Mask2Former / COMBO).

Cost C[q, k] = w_class * (-p_q(c_k)) + w_bce * BCE(m_q, t_k) + w_dice * Dice(m_q, t_k), the mask
terms evaluated on the same random points for predictions and targets (COMBO: weights 2, 5, 5 on
12544 points); the assignment minimising sum C is found by ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from train.losses.mask_losses import pairwise_dice_cost, pairwise_sigmoid_bce_cost, point_sample


def pixel_centre_coords(height: int, width: int, device: torch.device) -> torch.Tensor:
    """All pixel centres of an ``height x width`` grid as [1, H*W, 2] (x, y) in [0, 1]."""
    ys, xs = torch.meshgrid(
        (torch.arange(height, device=device) + 0.5) / height,
        (torch.arange(width, device=device) + 0.5) / width,
        indexing="ij",
    )
    return torch.stack((xs.flatten(), ys.flatten()), -1)[None]


class HungarianMatcher(nn.Module):
    """One-to-one matching of queries to targets per frame.

    Args:
        cost_class, cost_mask, cost_dice: weights of the three costs (2, 5, 5).
        num_points: random points for the mask costs; ``None`` evaluates every pixel centre of the
            prediction grid (deterministic, used in tests).

    forward(pred_logits [N,Q,K+1], pred_masks [N,Q,h,w],
            targets: list of N dicts {"labels": int64 [n_i], "masks": float [n_i,H,W]})
        -> list of N (query_index int64 [min(Q,n_i)], target_index int64 [min(Q,n_i)]).
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int | None = 12544
    ) -> None:
        super().__init__()
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    def cost_matrix(
        self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """Matching cost of one frame: pred_logits [Q,K+1], pred_masks [Q,h,w], labels [n],
        masks [n,H,W] -> [Q,n] (float32)."""
        pred_logits, pred_masks, masks = pred_logits.float(), pred_masks.float(), masks.float()
        class_cost = -pred_logits.softmax(-1)[:, labels]
        if self.num_points is None:
            coords = pixel_centre_coords(*pred_masks.shape[-2:], device=pred_masks.device)
        else:
            coords = torch.rand(1, self.num_points, 2, device=pred_masks.device)
        pred_points = point_sample(pred_masks[:, None], coords.expand(pred_masks.shape[0], -1, -1))[:, 0]
        target_points = point_sample(masks[:, None], coords.expand(masks.shape[0], -1, -1))[:, 0]
        return (
            self.cost_class * class_cost
            + self.cost_mask * pairwise_sigmoid_bce_cost(pred_points, target_points)
            + self.cost_dice * pairwise_dice_cost(pred_points, target_points)
        )

    @torch.no_grad()
    def forward(
        self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from scipy.optimize import linear_sum_assignment  # here: scoring builds a model, never trains one

        indices = []
        with torch.autocast(device_type=pred_masks.device.type, enabled=False):
            for frame, target in enumerate(targets):
                if target["labels"].numel() == 0:
                    empty = torch.empty(0, dtype=torch.int64)
                    indices.append((empty, empty))
                    continue
                cost = self.cost_matrix(pred_logits[frame], pred_masks[frame], target["labels"], target["masks"])
                rows, cols = linear_sum_assignment(cost.cpu().numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


__all__ = ["HungarianMatcher", "pixel_centre_coords"]
