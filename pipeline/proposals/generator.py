"""A fast class-agnostic mask generator for segment-anything-compatible models.

Same idea as segment-anything's ``SamAutomaticMaskGenerator`` (prompt the decoder with a
grid of points, keep confident and stable masks, suppress duplicates), reorganised so that
almost no work is done at full resolution:

1. the image is encoded once, at the model's encoder size (a smaller TinyViT input is
   enough for 224x224 frames, see ``models.build_mobile_sam``);
2. the decoder runs on large point batches; the predicted-IoU filter runs before the mask
   upscaling (:func:`decode_multimask`), stability and box NMS on the low-resolution logits
   [S/4,S/4] - the reference upsamples every candidate to 1024x1024 and back before filtering;
3. refinement rounds prompt only where no kept mask exists yet (points of a finer grid that
   fall in uncovered pixels), instead of a dense grid everywhere;
4. only the survivors of NMS are upsampled (bilinear) to the frame size and thresholded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class GeneratorSettings:
    """Knobs of :class:`FastMaskGenerator` (the ``proposals`` params section carries them)."""

    points_per_side: int = 16          # first round: regular grid of points_per_side^2 points
    refine_rounds: int = 1             # extra rounds prompting uncovered pixels only
    refine_points_per_side: int = 32   # candidate grid for the refinement rounds
    max_refine_points: int = 256       # cap per refinement round (evenly thinned)
    points_per_batch: int = 64         # points per decoder call (memory ~ 4 MB x points at 1024)
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0      # > 0: drop islands and fill holes smaller than this (pixels)

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.refine_points_per_side < 1:
            raise ValueError("points_per_side and refine_points_per_side must be >= 1")
        if self.points_per_batch < 1:
            raise ValueError("points_per_batch must be >= 1")
        if self.refine_rounds < 0 or self.max_refine_points < 0:
            raise ValueError("refine_rounds and max_refine_points must be >= 0")


def point_grid(n_per_side: int) -> np.ndarray:
    """Cell centres of an n x n grid in [0,1]^2 as float64 [n*n, 2] (x, y), SAM's layout."""
    offset = 1.0 / (2 * n_per_side)
    axis = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(axis, axis)
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)


def stability_scores(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at threshold +/- offset. logits [N,h,w] -> [N]."""
    high = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int32)
    low = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int32)
    return high.float() / low.float().clamp(min=1)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes (inclusive pixel bounds) of bool masks [N,h,w] -> float [N,4]; empty -> zeros."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4))
    h, w = masks.shape[-2:]
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    row_idx = torch.arange(h, device=masks.device)
    col_idx = torch.arange(w, device=masks.device)
    top = torch.where(rows, row_idx, h).amin(1)
    bottom = torch.where(rows, row_idx, -1).amax(1)
    left = torch.where(cols, col_idx, w).amin(1)
    right = torch.where(cols, col_idx, -1).amax(1)
    boxes = torch.stack([left, top, right, bottom], dim=1).float()
    empty = bottom < 0
    boxes[empty] = 0
    return boxes


def remove_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop connected islands and fill holes smaller than ``min_area`` pixels (bool [H,W])."""
    from scipy import ndimage

    out = mask.copy()
    for fill_holes in (False, True):
        region = ~out if fill_holes else out
        labels, count = ndimage.label(region)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < min_area)
        small = small[small > 0]
        if small.size:
            out[np.isin(labels, small)] = fill_holes
    return out


def decode_multimask(decoder: nn.Module, embedding: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                     dense: torch.Tensor, iou_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``MaskDecoder`` in multimask mode, with the predicted-IoU filter applied
    before the mask upscaling: the IoU head only needs the transformer's tokens, and the upscaling
    (two transposed convolutions per prompt) is a quarter of the decoder's cost.

    embedding [1,256,h,w], image_pe [1,256,h,w], sparse [B,n,256], dense [B,256,h,w] ->
    (low-res logits [N,4h,4w], predicted IoU [N]) of the N multimask outputs with IoU > iou_thresh.
    """
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
    src = embedding.expand(tokens.shape[0], -1, -1, -1) + dense
    pos = image_pe.expand(tokens.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos, tokens)
    iou = decoder.iou_prediction_head(hs[:, 0, :])[:, 1:]  # multimask outputs are tokens 1..3
    keep = iou > iou_thresh  # [B,3]
    prompts = keep.any(1)
    if not bool(prompts.any()):
        return torch.zeros((0, 4 * h, 4 * w)), torch.zeros(0)
    src = src[prompts].transpose(1, 2).reshape(-1, c, h, w)
    upscaled = decoder.output_upscaling(src)  # [P,C',4h,4w]
    mask_tokens = hs[prompts, 2:1 + decoder.num_mask_tokens, :]  # skip the iou token and the single-mask token
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i + 1](mask_tokens[:, i, :])
                         for i in range(mask_tokens.shape[1])], dim=1)  # [P,3,C']
    logits = (hyper @ upscaled.flatten(2)).view(upscaled.shape[0], -1, *upscaled.shape[-2:])
    kept = keep[prompts]
    return logits[kept], iou[prompts][kept]


class FastMaskGenerator:
    """Class-agnostic masks for one RGB frame with a ``Sam``-shaped model.

    ``generate(frame uint8 [H,W,3]) -> (masks bool [K,H,W], scores float32 [K])``; scores are
    the decoder's predicted IoU; K varies with the frame (0 is possible).
    """

    def __init__(self, model: nn.Module, settings: GeneratorSettings | None = None) -> None:
        self.model = model.eval()
        self.settings = settings or GeneratorSettings()
        self.encoder_size = int(model.image_encoder.img_size)
        self.mask_threshold = 0.0

    # ------------------------------------------------------------------------------ encoder
    @torch.inference_mode()
    def encode(self, frame: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embedding [1,256,S/16,S/16] and the (h, w) the frame occupies in the S x S input."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 [H,W,3], got {frame.dtype} {list(frame.shape)}")
        h, w = frame.shape[:2]
        scale = self.encoder_size / max(h, w)
        new_h, new_w = int(round(h * scale)), int(round(w * scale))
        image = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
        image = F.interpolate(image, (new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
        image = (image - self.model.pixel_mean.view(1, 3, 1, 1)) / self.model.pixel_std.view(1, 3, 1, 1)
        image = F.pad(image, (0, self.encoder_size - new_w, 0, self.encoder_size - new_h))
        return self.model.image_encoder(image), (new_h, new_w)

    # ------------------------------------------------------------------------------ decoder
    @torch.inference_mode()
    def _decode(self, embedding: torch.Tensor, points_xy: np.ndarray, valid_hw: tuple[int, int],
                frame_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits [N,h,w] (cropped to the frame) and predicted IoU [N] of the masks that pass
        the IoU and stability filters, for points (x, y) in frame pixels [P,2]."""
        s = self.settings
        low_side = embedding.shape[-1] * 4
        crop_h = int(round(valid_hw[0] * low_side / self.encoder_size))
        crop_w = int(round(valid_hw[1] * low_side / self.encoder_size))
        scale = torch.tensor([valid_hw[1] / frame_hw[1], valid_hw[0] / frame_hw[0]])
        dense_pe = self.model.prompt_encoder.get_dense_pe()
        kept_logits, kept_scores = [], []
        for start in range(0, len(points_xy), s.points_per_batch):
            coords = torch.as_tensor(points_xy[start:start + s.points_per_batch], dtype=torch.float32) * scale
            labels = torch.ones(coords.shape[0], 1)
            sparse, dense = self.model.prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None)
            logits, iou = decode_multimask(self.model.mask_decoder, embedding, dense_pe, sparse, dense,
                                           s.pred_iou_thresh)
            logits = logits[..., :crop_h, :crop_w]
            stable = stability_scores(logits, self.mask_threshold, s.stability_score_offset)
            keep = stable >= s.stability_score_thresh
            kept_logits.append(logits[keep])
            kept_scores.append(iou[keep])
        if not kept_logits:
            return torch.zeros((0, crop_h, crop_w)), torch.zeros(0)
        return torch.cat(kept_logits), torch.cat(kept_scores)

    def _nms(self, logits: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if logits.shape[0] == 0:
            return logits, scores
        binary = logits > self.mask_threshold
        nonempty = binary.flatten(1).any(1)
        logits, scores, binary = logits[nonempty], scores[nonempty], binary[nonempty]
        boxes = mask_boxes(binary)
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), self.settings.box_nms_thresh)
        return logits[keep], scores[keep]

    def _uncovered_points(self, logits: torch.Tensor, frame_hw: tuple[int, int]) -> np.ndarray:
        """Points of the refinement grid (frame pixels, [P,2]) that no kept mask covers."""
        s = self.settings
        h, w = frame_hw
        grid = point_grid(s.refine_points_per_side) * np.array([w, h])
        if logits.shape[0] == 0:
            candidates = grid
        else:
            covered = (logits > self.mask_threshold).any(0).numpy()
            ch, cw = covered.shape
            rows = np.clip((grid[:, 1] * ch / h).astype(int), 0, ch - 1)
            cols = np.clip((grid[:, 0] * cw / w).astype(int), 0, cw - 1)
            candidates = grid[~covered[rows, cols]]
        if len(candidates) > s.max_refine_points:
            pick = np.linspace(0, len(candidates) - 1, s.max_refine_points).round().astype(int)
            candidates = candidates[pick]
        return candidates

    # ------------------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        frame_hw = frame.shape[:2]
        embedding, valid_hw = self.encode(frame)
        points = point_grid(s.points_per_side) * np.array([frame_hw[1], frame_hw[0]])
        logits, scores = self._nms(*self._decode(embedding, points, valid_hw, frame_hw))
        for _ in range(s.refine_rounds):
            points = self._uncovered_points(logits, frame_hw)
            if len(points) == 0:
                break
            more_logits, more_scores = self._decode(embedding, points, valid_hw, frame_hw)
            logits, scores = self._nms(torch.cat([logits, more_logits]), torch.cat([scores, more_scores]))
        return self._to_frame(logits, scores, frame_hw)

    def _to_frame(self, logits: torch.Tensor, scores: torch.Tensor,
                  frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Upsample the surviving low-res logits to the frame and binarise: bool [K,H,W], float32 [K]."""
        if logits.shape[0] == 0:
            return np.zeros((0, *frame_hw), dtype=bool), np.zeros(0, dtype=np.float32)
        masks = []
        for start in range(0, logits.shape[0], 64):
            up = F.interpolate(logits[start:start + 64, None], frame_hw, mode="bilinear", align_corners=False)
            masks.append(up[:, 0] > self.mask_threshold)
        binary = torch.cat(masks).numpy()
        scores_np = scores.numpy().astype(np.float32)
        if self.settings.min_mask_region_area > 0:
            binary = np.stack([remove_small_regions(m, self.settings.min_mask_region_area) for m in binary])
        # Upsampling or region cleaning can empty a mask; and an empty mask is no proposal.
        nonempty = binary.reshape(len(binary), -1).any(1)
        order = np.argsort(-scores_np[nonempty], kind="stable")
        return binary[nonempty][order], scores_np[nonempty][order]
