"""A fast class-agnostic mask generator for segment-anything-compatible models.

segment-anything's ``SamAutomaticMaskGenerator`` prompts the decoder with a 32 x 32 grid of
points, keeps confident (predicted IoU) and stable masks and suppresses duplicates (box NMS).
This generator returns the same masks for the points it prompts, and gets there much faster:

1. the image is resized exactly as the reference does (PIL bilinear, uint8), so the image
   embedding is the reference's own (an encoder input below 1024 is allowed for speed);
2. the decoder is :class:`pipeline.proposals.decoder.SharedImageDecoder`: the released weights,
   reorganised around what the prompts share (3-6x less work per prompt on a CPU);
3. the predicted-IoU filter runs on the transformer's tokens, before the mask upscaling, which
   then runs only for prompts with a surviving mask;
4. the reference's post-processing (upsample to the encoder input, crop, resize to the frame) is
   one separable linear map per axis (:func:`frame_resize_operator`), applied to survivors only;
   stability, thresholds and NMS then run at frame resolution, as in the reference;
5. coarse-to-fine rounds (:func:`coarse_to_fine_rounds`): every 8th grid point first, then the
   stride halves and only grid points that no kept mask covers are prompted. ``coarse_levels: 0``
   prompts the whole grid: the reference itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from pipeline.proposals.decoder import SharedImageDecoder
from pipeline.proposals.generator_settings import GeneratorSettings


def coarse_to_fine_rounds(n_per_side: int, levels: int) -> list[np.ndarray]:
    """Indices into :func:`point_grid` (row-major) of each round's candidate points: round 0 takes
    rows/columns ``s//2, s//2 + s, ...`` with stride ``s = 2^levels``, each later round halves the
    stride. Every grid point appears in exactly one round; the last round completes the grid."""
    seen = np.zeros((n_per_side, n_per_side), bool)
    rounds = []
    for level in range(levels, -1, -1):
        stride = 2**level
        pick = np.zeros_like(seen)
        pick[stride // 2 :: stride, stride // 2 :: stride] = True
        pick &= ~seen
        seen |= pick
        rounds.append(np.flatnonzero(pick))
    if not seen.all():  # a stride that does not reach some rows/columns: they join the last round
        rounds[-1] = np.union1d(rounds[-1], np.flatnonzero(~seen))
    return rounds


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


def neighbour_similarity(
    embedding: torch.Tensor,
    grid_xy: np.ndarray,
    valid_hw: tuple[int, int],
    frame_hw: tuple[int, int],
    encoder_size: int,
    n_per_side: int,
) -> np.ndarray:
    """For each grid point (row-major [n*n,2] frame pixels (x, y)), the highest cosine similarity
    between its image-embedding token and those of its (up to 8) grid neighbours: float [n*n].

    A point unlike all its neighbours sits on a small or thin structure: the decoder gives it masks
    that the neighbours' prompts do not (measured on the tuning frames: the reference masks that
    only one or two grid points produce come from such points)."""
    side = embedding.shape[-1]
    scale = np.array([valid_hw[1] / frame_hw[1], valid_hw[0] / frame_hw[0]]) * side / encoder_size
    token = np.clip((grid_xy * scale).astype(int), 0, side - 1)
    feats = F.normalize(embedding[0][:, token[:, 1], token[:, 0]].T.float(), dim=1)
    feats = F.pad(feats.reshape(n_per_side, n_per_side, -1).permute(2, 0, 1), (1, 1, 1, 1))  # zero border
    best = torch.full((n_per_side, n_per_side), -1.0)
    centre = feats[:, 1:-1, 1:-1]
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == dx == 1:
                continue
            shifted = feats[:, dy : dy + n_per_side, dx : dx + n_per_side]
            sim = (centre * shifted).sum(0)
            valid = shifted.abs().sum(0) > 0  # border padding is no neighbour
            best = torch.where(valid, torch.maximum(best, sim), best)
    return best.reshape(-1).numpy()


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

    def _frame_operators(
        self, low_side: int, valid_hw: tuple[int, int], frame_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (low_side, valid_hw, frame_hw)
        if key not in self._operators:
            self._operators[key] = (
                frame_resize_operator(low_side, self.encoder_size, valid_hw[0], frame_hw[0]),
                frame_resize_operator(low_side, self.encoder_size, valid_hw[1], frame_hw[1]),
            )
        return self._operators[key]

    # ------------------------------------------------------------------------------ decoder
    def _shared_decoder(self, embedding: torch.Tensor) -> SharedImageDecoder:
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *embedding.shape[-2:])
        return SharedImageDecoder(self.model.mask_decoder, embedding, prompt_encoder.get_dense_pe(), dense)

    @torch.inference_mode()
    def _decode(
        self, decoder: SharedImageDecoder, points_xy: np.ndarray, valid_hw: tuple[int, int], frame_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Binary masks bool [K,H,W] at frame resolution, predicted IoU [K] and the prompt each came
        from (int64 [K], index into points_xy) of the multimask outputs of points (x, y) in frame
        pixels [P,2] that pass the IoU and stability filters."""
        s = self.settings
        low_side = decoder.hw[0] * 4
        rows, cols = self._frame_operators(low_side, valid_hw, frame_hw)
        scale = torch.tensor([valid_hw[1] / frame_hw[1], valid_hw[0] / frame_hw[0]])
        kept_masks, kept_scores, kept_prompts = [], [], []
        for start in range(0, len(points_xy), s.points_per_batch):
            coords = torch.as_tensor(points_xy[start : start + s.points_per_batch], dtype=torch.float32) * scale
            labels = torch.ones(coords.shape[0], 1)
            sparse, _ = self.model.prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None)
            tokens, image = decoder.transformer(sparse)
            iou = decoder.iou(tokens)[:, 1:]  # multimask outputs are mask tokens 1..3
            keep = iou > s.pred_iou_thresh  # [B,3]
            prompts = keep.any(1)
            if not bool(prompts.any()):
                continue
            # The IoU head needs only the tokens: upscale just the prompts with a surviving mask.
            prompt_ids = torch.arange(start, start + coords.shape[0])[prompts]
            if not bool(prompts.all()):  # indexing copies [P,N,C]: only when some prompt drops out
                tokens, image, iou, keep = tokens[prompts], image[prompts], iou[prompts], keep[prompts]
            low = decoder.masks(tokens, image)[keep]  # [K,4h,4w]
            logits = rows @ low @ cols.T  # [K,H,W]: the reference's upsample-crop-resize, exactly
            stable = stability_scores(logits, self.mask_threshold, s.stability_score_offset) >= s.stability_score_thresh
            kept_masks.append(logits[stable] > self.mask_threshold)
            kept_scores.append(iou[keep][stable])
            kept_prompts.append(prompt_ids[:, None].expand_as(keep)[keep][stable])
        if not kept_masks:
            return torch.zeros((0, *frame_hw), dtype=torch.bool), torch.zeros(0), torch.zeros(0, dtype=torch.long)
        return torch.cat(kept_masks), torch.cat(kept_scores), torch.cat(kept_prompts)

    def _nms(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Indices of the candidates that survive box NMS (best first)."""
        if scores.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        return batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), self.settings.box_nms_thresh)

    def _uncovered(self, points_xy: np.ndarray, masks: torch.Tensor) -> np.ndarray:
        """bool [P]: which points (frame pixels, [P,2]) no kept mask [K,H,W] covers. Masks over
        ``cover_max_area`` of the frame do not count: a point inside a large region can still
        bring out that region's parts."""
        uncovered = np.ones(len(points_xy), bool)
        if masks.shape[0] == 0 or len(points_xy) == 0:
            return uncovered
        h, w = masks.shape[-2:]
        small = masks.flatten(1).sum(1) <= self.settings.cover_max_area * h * w
        if not bool(small.any()):
            return uncovered
        covered = masks[small].any(0).numpy()
        rows = np.clip(points_xy[:, 1].astype(int), 0, h - 1)
        cols = np.clip(points_xy[:, 0].astype(int), 0, w - 1)
        return ~covered[rows, cols]

    # ------------------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame_hw = frame.shape[:2]
        embedding, valid_hw = self.encode(frame)
        decoder = self._shared_decoder(embedding)
        grid = self.grid_points(frame_hw)
        similarity = self.point_similarity(embedding, grid, valid_hw, frame_hw)
        masks, scores = self.run_rounds(
            lambda idx: self._decode(decoder, grid[idx], valid_hw, frame_hw)[:2], grid, frame_hw, similarity
        )
        return self._finish(masks, scores)

    def point_similarity(
        self, embedding: torch.Tensor, grid: np.ndarray, valid_hw: tuple[int, int], frame_hw: tuple[int, int]
    ) -> np.ndarray | None:
        """:func:`neighbour_similarity` of the grid, or None when ``distinct_similarity`` is off."""
        if self.settings.distinct_similarity <= 0.0:
            return None
        return neighbour_similarity(
            embedding, grid, valid_hw, frame_hw, self.encoder_size, self.settings.points_per_side
        )

    def grid_points(self, frame_hw: tuple[int, int]) -> np.ndarray:
        """The prompt grid in frame pixels (x, y), float64 [N*N,2], row-major."""
        return point_grid(self.settings.points_per_side) * np.array([frame_hw[1], frame_hw[0]])

    def run_rounds(
        self, decode, grid: np.ndarray, frame_hw: tuple[int, int], similarity: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse-to-fine prompting. ``decode(indices int [P]) -> (masks bool [K,H,W], scores [K])``
        decodes the grid points ``grid[indices]``; ``similarity`` [P] (:meth:`point_similarity`)
        marks the distinct points prompted even when covered. Returns the NMS survivors (masks, scores).

        Taking ``decode`` as a function lets the benchmark replay a strategy on recorded per-point
        outputs (:meth:`point_candidates`) with exactly this code. ``last_prompts`` counts prompts."""
        masks = torch.zeros((0, *frame_hw), dtype=torch.bool)
        scores, boxes = torch.zeros(0), torch.zeros((0, 4))
        kept = torch.zeros(0, dtype=torch.long)
        self.last_prompts = 0
        for i, indices in enumerate(coarse_to_fine_rounds(self.settings.points_per_side, self.settings.coarse_levels)):
            # A point inside a kept mask would mostly return that mask again (NMS drops it): only
            # points on not-yet-segmented pixels are worth a decoder call.
            if i > 0:
                wanted = self._uncovered(grid[indices], masks[kept])
                if similarity is not None:
                    wanted |= similarity[indices] < self.settings.distinct_similarity
                indices = indices[wanted]
            if len(indices) == 0:
                continue
            self.last_prompts += len(indices)
            new_masks, new_scores = decode(indices)
            # Every candidate is kept until the end and NMS always runs on all of them, so the result
            # is the reference's NMS over the prompted points, whatever the order of the rounds.
            masks, scores = torch.cat([masks, new_masks]), torch.cat([scores, new_scores])
            boxes = torch.cat([boxes, mask_boxes(new_masks)])
            kept = self._nms(boxes, scores)
        return masks[kept], scores[kept]

    @torch.inference_mode()
    def point_candidates(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every grid point decoded once, before NMS: masks bool [K,H,W], predicted IoU [K] and the
        grid index (row-major) each came from, int64 [K]. NMS over all of them is ``coarse_levels: 0``."""
        frame_hw = frame.shape[:2]
        embedding, valid_hw = self.encode(frame)
        return self._decode(self._shared_decoder(embedding), self.grid_points(frame_hw), valid_hw, frame_hw)

    def _finish(self, masks: torch.Tensor, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Optional small-region cleaning, drop empty masks, sort by score: bool [K,H,W], float32 [K]."""
        binary = masks.numpy()
        scores_np = scores.numpy().astype(np.float32)
        if len(binary) and self.settings.min_mask_region_area > 0:
            binary = np.stack([remove_small_regions(m, self.settings.min_mask_region_area) for m in binary])
        nonempty = binary.reshape(len(binary), -1).any(1)
        order = np.argsort(-scores_np[nonempty], kind="stable")
        return binary[nonempty][order], scores_np[nonempty][order]
