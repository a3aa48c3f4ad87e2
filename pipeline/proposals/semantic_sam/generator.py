"""Semantic-SAM's automatic mask generator (official ``SemanticSamAutomaticMaskGenerator``, one crop).

Same steps and order as the official code, so the same masks come out: a regular grid of point
prompts decoded ``points_per_batch`` at a time (queries of a batch attend to each other, so batch
size and grid order are part of the result), keep masks whose raw IoU score > ``pred_iou_thresh``
and whose stability (logits > +offset vs > -offset) >= ``stability_score_thresh``, box NMS, then
removal of holes and islands smaller than ``min_mask_region_area`` pixels and NMS again (masks
changed by it rank after unchanged ones).

Cheaper than the official loop but equal in output: only the requested mask tokens are decoded
into masks (the official code computes all 6 tokens on all decoder layers), and only masks that
pass the IoU filter are upsampled to the image.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import batched_nms

from pipeline.proposals.generator_settings import SemanticSamGeneratorSettings
from pipeline.proposals.semantic_sam.model import SemanticSam, upsample_masks


def point_grid(n: int) -> np.ndarray:
    """[n*n, 2] cell centres (x, y) in [0,1], rows (y) outer, columns (x) inner."""
    side = np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    xs = np.tile(side[None, :], (n, 1))
    ys = np.tile(side[:, None], (1, n))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """[K,H,W] -> [K]: area above threshold+offset over area above threshold-offset."""
    inter = (logits > threshold + offset).sum((-1, -2), dtype=torch.int64)
    union = (logits > threshold - offset).sum((-1, -2), dtype=torch.int64)
    return inter / union


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """bool [K,H,W] -> int64 [K,4] inclusive x0, y0, x1, y1; zeros for empty masks."""
    if len(masks) == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    h, w = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    ys, xs = torch.arange(h, device=masks.device), torch.arange(w, device=masks.device)
    bottom = (rows * ys).amax(-1)
    top = torch.where(rows, ys, h).amin(-1)
    right = (cols * xs).amax(-1)
    left = torch.where(cols, xs, w).amin(-1)
    boxes = torch.stack([left, top, right, bottom], -1)
    return boxes * (rows.any(-1))[:, None]


EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than min_area (8-connectivity).

    Islands: when every island is small, the largest is kept. -> (mask, changed)
    """
    holes = mode == "holes"
    working = mask ^ holes
    labels, n = ndimage.label(working, structure=EIGHT_CONNECTED)
    if n == 0:
        return mask, False
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.nonzero(sizes < min_area)[0] + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


class SemanticSamAutomaticMaskGenerator:
    def __init__(self, model: SemanticSam, settings: SemanticSamGeneratorSettings | None = None) -> None:
        self.model = model
        self.settings = settings or SemanticSamGeneratorSettings()
        self.points = torch.as_tensor(point_grid(self.settings.points_per_side), dtype=torch.float32)

    @torch.no_grad()
    def generate(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [3,h,w] 0..255 RGB -> (bool masks [K,h,w], raw IoU scores [K]) on the CPU, official order."""
        features = self.model.encode(image)
        return self.generate_from_features(features)

    @torch.no_grad()
    def generate_from_features(self, features) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        masks, scores = [], []
        for start in range(0, len(self.points), s.points_per_batch):
            m, sc = self._process_batch(features, self.points[start : start + s.points_per_batch])
            masks.append(m)
            scores.append(sc)
        masks, scores = torch.cat(masks), torch.cat(scores)
        keep = batched_nms(masks_to_boxes(masks).float(), scores, torch.zeros(len(masks)), s.box_nms_thresh)
        masks, scores = masks[keep], scores[keep]
        if s.min_mask_region_area > 0 and len(masks):
            masks, scores = self._postprocess_small_regions(masks, scores)
        return masks, scores

    def _process_batch(self, features, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        logits, iou = self.model.predict_points(features, points, tokens=list(s.tokens))
        iou = iou.float().cpu()
        keep = iou > s.pred_iou_thresh
        logits = upsample_masks(logits[keep.to(logits.device)], features)
        stable = stability_score(logits, 0.0, s.stability_score_offset).cpu() >= s.stability_score_thresh
        masks = (logits > 0.0).cpu()[stable]
        return masks, iou[keep][stable]

    def _postprocess_small_regions(self, masks: torch.Tensor, scores: torch.Tensor):
        area = self.settings.min_mask_region_area
        new_masks, unchanged = [], []
        for mask in masks.numpy():
            mask, changed_holes = remove_small_regions(mask, area, "holes")
            mask, changed_islands = remove_small_regions(mask, area, "islands")
            new_masks.append(torch.from_numpy(mask))
            unchanged.append(float(not (changed_holes or changed_islands)))
        new = torch.stack(new_masks)
        flags = torch.as_tensor(unchanged)
        keep = batched_nms(
            masks_to_boxes(new).float(), flags, torch.zeros(len(new)), max(self.settings.box_nms_thresh, 0.7)
        )
        # the official code writes the cleaned mask back only for changed masks (for unchanged ones they are equal)
        return new[keep], scores[keep]
