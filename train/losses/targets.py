"""Ground truth -> per-class mask targets, shared by the COMBO and TransAVS criteria."""

from __future__ import annotations

import torch

from pipeline.labels import IGNORE_LABEL


def masks_to_targets(gt: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Per-class targets of one frame: gt int64 [H,W] (class ids, 255 = ignore) ->
    {"labels": int64 [n], "masks": float32 [n,H,W]} for the n classes present.

    Binary datasets (num_classes = 2): class 0 = background, class 1 = foreground, as in COMBO.
    Ignored pixels belong to no mask.
    """
    labels = torch.unique(gt)
    labels = labels[labels != IGNORE_LABEL]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"ground truth holds class ids {labels.tolist()} outside 0..{num_classes - 1} (and {IGNORE_LABEL} = ignore)"
        )
    masks = (gt[None] == labels[:, None, None]).float()
    return {"labels": labels.long(), "masks": masks}
