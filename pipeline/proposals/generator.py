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

from pipeline.proposals.decoder import SharedImageDecoder


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


def frame_resize_operator(low_side: int, encoder_size: int, valid: int, out: int) -> torch.Tensor:
    """The linear map [out, low_side] that segment-anything's ``postprocess_masks`` applies along one
    axis: bilinear upsampling of the low-res logits to the encoder input (encoder_size), crop to
    the frame's extent in it (valid), bilinear resize to the frame (out); align_corners=False.

    Both resizes are separable and linear, so the whole chain is L -> M_h L M_w^T: the reference
    masks exactly, without ever building the [1024,1024] intermediate per mask."""
    eye = torch.eye(low_side, dtype=torch.float64).view(low_side, 1, low_side, 1)
    up = F.interpolate(eye, size=(encoder_size, 1), mode="bilinear", align_corners=False)[:, :, :valid]
    down = F.interpolate(up, size=(out, 1), mode="bilinear", align_corners=False)
    return down[:, 0, :, 0].T.contiguous().float()


class FastMaskGenerator:
    """Class-agnostic masks for one RGB frame with a ``Sam``-shaped model.

    ``generate(frame uint8 [H,W,3]) -> (masks bool [K,H,W], scores float32 [K])``; scores are
    the decoder's predicted IoU; K varies with the frame (0 is possible).

    For the prompts it runs, the masks, predicted IoU and stability scores are those of
    segment-anything's ``SamAutomaticMaskGenerator`` (same image resize, same logits up to float
    rounding, same frame-resolution thresholds): the speed comes from the decoder
    (:class:`SharedImageDecoder`), from skipping the upscaling of prompts whose every mask fails
    the IoU filter, from the separable post-processing (:func:`frame_resize_operator`), and from
    prompting fewer points (refinement rounds).
    """

    def __init__(self, model: nn.Module, settings: GeneratorSettings | None = None) -> None:
        self.model = model.eval()
        self.settings = settings or GeneratorSettings()
        self.encoder_size = int(model.image_encoder.img_size)
        self.mask_threshold = 0.0
        self._operators: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------------------ encoder
    @torch.inference_mode()
    def encode(self, frame: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embedding [1,256,S/16,S/16] and the (h, w) the frame occupies in the S x S input."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 [H,W,3], got {frame.dtype} {list(frame.shape)}")
        from PIL import Image

        h, w = frame.shape[:2]
        scale = self.encoder_size / max(h, w)
        new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
        # PIL bilinear on uint8, as segment-anything's ResizeLongestSide: the embedding (hence every
        # mask) is then the reference generator's own.
        resized = np.array(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))
        image = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
        image = (image - self.model.pixel_mean.view(1, 3, 1, 1)) / self.model.pixel_std.view(1, 3, 1, 1)
        image = F.pad(image, (0, self.encoder_size - new_w, 0, self.encoder_size - new_h))
        return self.model.image_encoder(image), (new_h, new_w)

    def _frame_operators(self, low_side: int, valid_hw: tuple[int, int],
                         frame_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        key = (low_side, valid_hw, frame_hw)
        if key not in self._operators:
            self._operators[key] = (frame_resize_operator(low_side, self.encoder_size, valid_hw[0], frame_hw[0]),
                                    frame_resize_operator(low_side, self.encoder_size, valid_hw[1], frame_hw[1]))
        return self._operators[key]

    # ------------------------------------------------------------------------------ decoder
    def _shared_decoder(self, embedding: torch.Tensor) -> SharedImageDecoder:
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *embedding.shape[-2:])
        return SharedImageDecoder(self.model.mask_decoder, embedding, prompt_encoder.get_dense_pe(), dense)

    @torch.inference_mode()
    def _decode(self, decoder: SharedImageDecoder, points_xy: np.ndarray, valid_hw: tuple[int, int],
                frame_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary masks bool [K,H,W] at frame resolution and predicted IoU [K] of the multimask outputs
        of points (x, y) in frame pixels [P,2] that pass the IoU and stability filters."""
        s = self.settings
        low_side = decoder.hw[0] * 4
        rows, cols = self._frame_operators(low_side, valid_hw, frame_hw)
        scale = torch.tensor([valid_hw[1] / frame_hw[1], valid_hw[0] / frame_hw[0]])
        kept_masks, kept_scores = [], []
        for start in range(0, len(points_xy), s.points_per_batch):
            coords = torch.as_tensor(points_xy[start:start + s.points_per_batch], dtype=torch.float32) * scale
            labels = torch.ones(coords.shape[0], 1)
            sparse, _ = self.model.prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None)
            tokens, image = decoder.transformer(sparse)
            iou = decoder.iou(tokens)[:, 1:]  # multimask outputs are mask tokens 1..3
            keep = iou > s.pred_iou_thresh  # [B,3]
            prompts = keep.any(1)
            if not bool(prompts.any()):
                continue
            # The IoU head needs only the tokens: upscale just the prompts with a surviving mask.
            low = decoder.masks(tokens[prompts], image[prompts])[keep[prompts]]  # [K,4h,4w]
            logits = rows @ low @ cols.T  # [K,H,W]: the reference's upsample-crop-resize, exactly
            stable = stability_scores(logits, self.mask_threshold, s.stability_score_offset) >= s.stability_score_thresh
            kept_masks.append(logits[stable] > self.mask_threshold)
            kept_scores.append(iou[prompts][keep[prompts]][stable])
        if not kept_masks:
            return torch.zeros((0, *frame_hw), dtype=torch.bool), torch.zeros(0)
        return torch.cat(kept_masks), torch.cat(kept_scores)

    def _nms(self, masks: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if masks.shape[0] == 0:
            return masks, scores
        boxes = mask_boxes(masks)
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), self.settings.box_nms_thresh)
        return masks[keep], scores[keep]

    def _uncovered_points(self, masks: torch.Tensor, frame_hw: tuple[int, int]) -> np.ndarray:
        """Points of the refinement grid (frame pixels, [P,2]) that no kept mask covers."""
        s = self.settings
        h, w = frame_hw
        grid = point_grid(s.refine_points_per_side) * np.array([w, h])
        if masks.shape[0] == 0:
            candidates = grid
        else:
            covered = masks.any(0).numpy()
            rows = np.clip(grid[:, 1].astype(int), 0, h - 1)
            cols = np.clip(grid[:, 0].astype(int), 0, w - 1)
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
        decoder = self._shared_decoder(embedding)
        points = point_grid(s.points_per_side) * np.array([frame_hw[1], frame_hw[0]])
        masks, scores = self._nms(*self._decode(decoder, points, valid_hw, frame_hw))
        for _ in range(s.refine_rounds):
            points = self._uncovered_points(masks, frame_hw)
            if len(points) == 0:
                break
            more_masks, more_scores = self._decode(decoder, points, valid_hw, frame_hw)
            masks, scores = self._nms(torch.cat([masks, more_masks]), torch.cat([scores, more_scores]))
        return self._finish(masks, scores)

    def _finish(self, masks: torch.Tensor, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Optional small-region cleaning, drop empty masks, sort by score: bool [K,H,W], float32 [K]."""
        binary = masks.numpy()
        scores_np = scores.numpy().astype(np.float32)
        if len(binary) and self.settings.min_mask_region_area > 0:
            binary = np.stack([remove_small_regions(m, self.settings.min_mask_region_area) for m in binary])
        nonempty = binary.reshape(len(binary), -1).any(1)
        order = np.argsort(-scores_np[nonempty], kind="stable")
        return binary[nonempty][order], scores_np[nonempty][order]
