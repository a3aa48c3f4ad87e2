"""TransAVS losses (Ling et al., "TransAVS: End-to-end audio-visual segmentation with transformer").

Equation numbers refer to that paper:

* eq. 9-10  ``aqdl_loss``: Audio Query Distance Loss on the projected audio queries h(q_i) of the
  confident set S_1 = {z_k | p_k > delta_1}.
* eq. 11-12 ``aqml_loss``: Audio Query Mask Loss on the masks m_i of S_2 = {z_k | p_k > delta_2}.
* eq. 18    ``confidence_threshold``: the increasing schedule of delta_1 and delta_2.
* eq. 13    ``TransAVSCriterion``: L = l1 L_AQDL + l2 L_AQML + l3 L_class + l4 L_dice, with the
  focal classification loss [29] and the dice loss [30] on queries matched to the ground truth
  by bipartite (Hungarian) matching.

Interpretation choices (the paper leaves these open; each is listed with its reason)
-----------------------------------------------------------------------------------
1. Eq. 9 is kept verbatim, including its normaliser 2 / (n (n + 1)) (not the number of pairs
   n (n - 1) / 2). With n < 2 there is no pair and the loss is 0 (eq. 9 with an empty sum; for
   n = 0 the normaliser 2/0 is taken as 0), so an empty S_1 / S_2 never gives NaN.
2. Eq. 10: 1 / ||h(q_i) - h(q_j)||^2 is infinite for identical queries (e.g. silent audio, where
   every audio query is a multiple of the same vector). The squared distance is clamped from
   below at ``min_sq_distance`` (1e-6) before the reciprocal; pairs at or above d_0 contribute 0
   and no gradient. The paper gives no value for d_0; ``d0 = 1.0`` is the default because
   queries of a working model are far apart in a 256-d space (squared distances >> 1), so the
   term only acts on queries that collapse onto each other, which is its stated purpose.
3. Eq. 12: "Bin" is ``m >= 0.5`` (non-differentiable; the gradient flows through the soft m of
   the other factor), and the Hadamard products are summed over pixels, so with the 1/(2HW)
   factor I(m_i, m_j) is a mean over pixels in [0, 1]. H, W are those of the masks passed in
   (the model passes its 1/4-resolution mask probabilities; see train/models/transavs.py).
4. Eq. 18 is clamped at b: the 18 in its denominator is 90k iterations / n_iter = 5000, so the
   schedule reaches b exactly at the end of the paper's 90k-iteration training; continuing past
   that (or a longer schedule) keeps delta = b instead of exceeding it.
5. p_k, the "probability of sounding objects" of query k, is the summed probability of the
   sounding classes 1..K-1, i.e. 1 - P_k(background) - P_k(no object) (see the model's choice 7
   for the K + 1 outputs). For the binary head this is P_k(sounding).
6. AQDL and AQML are self-supervised, so they are computed on every frame (labelled or not),
   each frame with its own queries q_i (the model's queries are per frame) and its own S_1 / S_2,
   and averaged over frames.
7. Matching (the paper only says predictions are "paired" with the ground truth): Hungarian
   matching per labelled frame (the shared ``HungarianMatcher``) with cost
   l3 * (-p_q(c)) + l4 * dice, i.e. the weights of the supervised part of eq. 13 and the
   class/dice costs of DETR / Mask2Former (no BCE term: TransAVS has no BCE loss). The costs
   are evaluated on the mask-logit grid (every pixel centre by default, ``match_points``
   random points otherwise) with the ground truth sampled there; 255 pixels count as outside
   every segment in the matching cost only.
8. Ground-truth segments: one per class present in a labelled frame, background included (the
   model's choice 7; binary datasets: background and the foreground union, class 1). AVSBench has
   no instance ids, so MS3's binary ground truth is the union of the sounding objects and one
   matched query has to cover several separate objects. ``split_objects: true`` instead splits
   each sounding class into its 8-connected components (``object_segments``; pieces under
   ``min_object_fraction`` of the class's largest object join it), closer to the paper's "instance
   level" queries. It is off by default because it measured worse on the demo at 850 steps: MS3 M_J
   0.245 -> 0.341 but its audio-shuffle drop 0.119 -> 0.055, and S4 M_J 0.671 -> 0.417, with S4's
   shuffled-audio M_J up from 0.068 to 0.212 (more objects segmented whether or not they sound). Unmatched queries take the "no object"
   class K in the focal loss, whose alpha_t is 1 - alpha for "no object" and alpha for the K
   categories ([29]'s negatives and positives). Pixels labelled 255 are left out of the dice loss
   (prediction and target set to 0 there).
9. Normalisation: focal (sum over queries) and dice (sum over matched pairs) are divided by the
   number of ground-truth segments in the batch (at least 1), RetinaNet / DETR practice; the
   dice loss is computed at the ground-truth resolution on the eq.-7 masks (bilinear upsampling
   of the mask logits is exact, see the model docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from pipeline.labels import IGNORE_LABEL
from train.losses.focal import softmax_focal_loss
from train.losses.mask_losses import dice_loss
from train.losses.matcher import HungarianMatcher
from train.losses.targets import masks_to_targets

# ----------------------------------------------------------------------------------------------
# Eq. 18: confidence-threshold schedule
# ----------------------------------------------------------------------------------------------


def confidence_threshold(
    step: int, a: float = 0.55, b: float = 0.65, n_iter: int = 5000, num_increments: int = 18
) -> float:
    """delta_i = a + (b - a) / 18 * floor(iterations / n_iter), i in {1, 2} (eq. 18), clamped at b.

    Args:
        step: current training iteration (>= 0).
        a, b: start and final threshold (0.55, 0.65 in the paper).
        n_iter: iterations between increments (5000).
        num_increments: the 18 of eq. 18 (= 90k iterations / 5000).
    """
    if step < 0:
        raise ValueError(f"confidence_threshold: step must be >= 0, got {step}")
    if n_iter <= 0 or num_increments <= 0:
        raise ValueError(f"confidence_threshold: n_iter and num_increments must be > 0, got {n_iter}, {num_increments}")
    increments = min(step // n_iter, num_increments)
    return a + (b - a) / num_increments * increments


# ----------------------------------------------------------------------------------------------
# Eq. 9-12: pairwise losses over a confident set
# ----------------------------------------------------------------------------------------------


def _pair_normaliser(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs i < j with both queries selected, and the eq. 9/11 factor 2 / (n (n + 1)).

    selected: [F, N] bool -> (pairs [F, N, N] float, factor [F] float; 0 where n = 0).
    """
    sel = selected.float()
    upper = torch.ones(sel.shape[-1], sel.shape[-1], dtype=torch.bool, device=sel.device).triu(1)
    pairs = sel[:, :, None] * sel[:, None, :] * upper
    n = sel.sum(-1)
    factor = torch.where(n > 0, 2.0 / (n * (n + 1)).clamp_min(1.0), torch.zeros_like(n))
    return pairs, factor


def aqdl_loss(
    projected_queries: torch.Tensor, selected: torch.Tensor, d0: float = 1.0, min_sq_distance: float = 1e-6
) -> torch.Tensor:
    """Audio Query Distance Loss (eq. 9-10), averaged over sets (frames).

        L_AQDL = 2 / (n_1 (n_1 + 1)) * sum_{i<j in S_1} d(q_i, q_j)
        d(q_i, q_j) = 1 / ||h(q_i) - h(q_j)||^2  if ||h(q_i) - h(q_j)||^2 < d_0, else 0

    Args:
        projected_queries: [F, N, d] h(q) of each frame's audio queries.
        selected: [F, N] bool, membership of S_1 (p_k > delta_1) in each frame.
        d0: distance threshold d_0 of eq. 10.
        min_sq_distance: lower clamp of the squared distance (identical queries stay finite).

    Returns:
        scalar: mean over the F sets of eq. 9; a set with fewer than 2 queries gives 0.
    """
    if projected_queries.dim() != 3 or selected.shape != projected_queries.shape[:2]:
        raise ValueError(
            f"aqdl_loss: expected projected_queries [F,N,d] and selected [F,N], "
            f"got {tuple(projected_queries.shape)} and {tuple(selected.shape)}"
        )
    x = projected_queries.float()
    sq_norm = (x * x).sum(-1)
    sq_dist = (sq_norm[:, :, None] + sq_norm[:, None, :] - 2 * x @ x.transpose(1, 2)).clamp_min(0.0)
    inverse = torch.where(sq_dist < d0, 1.0 / sq_dist.clamp_min(min_sq_distance), torch.zeros_like(sq_dist))
    pairs, factor = _pair_normaliser(selected)
    return ((pairs * inverse).sum((-1, -2)) * factor).mean()


def aqml_loss(mask_probs: torch.Tensor, selected: torch.Tensor, bin_threshold: float = 0.5) -> torch.Tensor:
    """Audio Query Mask Loss (eq. 11-12), averaged over frames.

        L_AQML = 2 / (n_2 (n_2 + 1)) * sum_{i<j in S_2} I(m_i, m_j)
        I(m_i, m_j) = 1 / (2HW) * sum_xy [Bin(m_i) * m_j + m_i * Bin(m_j)]

    Args:
        mask_probs: [F, N, H, W] (or [F, N, P]) mask probabilities m in [0, 1].
        selected: [F, N] bool, membership of S_2 (p_k > delta_2) in each frame.
        bin_threshold: Bin(m) = m >= bin_threshold (0.5 in the paper).

    Returns:
        scalar: mean over the F frames; a frame with fewer than 2 selected queries gives 0.
    """
    if mask_probs.dim() not in (3, 4) or selected.shape != mask_probs.shape[:2]:
        raise ValueError(
            f"aqml_loss: expected mask_probs [F,N,H,W] and selected [F,N], "
            f"got {tuple(mask_probs.shape)} and {tuple(selected.shape)}"
        )
    m = mask_probs.float().flatten(2)  # [F, N, P]
    binary = (m.detach() >= bin_threshold).float()
    overlap = binary @ m.transpose(1, 2)  # [F, N, N]: sum_xy Bin(m_i) m_j
    intersection = (overlap + overlap.transpose(1, 2)) / (2 * m.shape[-1])
    pairs, factor = _pair_normaliser(selected)
    return ((pairs * intersection).sum((-1, -2)) * factor).mean()


# ----------------------------------------------------------------------------------------------
# Eq. 13: full criterion
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransAVSLossConfig:
    """Weights and hyper-parameters of eq. 9-13 and 18 (paper values where the paper gives them)."""

    weight_aqdl: float = 2.0  # lambda_1
    weight_aqml: float = 2.0  # lambda_2
    weight_class: float = 5.0  # lambda_3
    weight_dice: float = 5.0  # lambda_4
    d0: float = 1.0  # eq. 10 (not given in the paper)
    focal_alpha: float | None = 0.25  # [29] defaults
    focal_gamma: float = 2.0
    threshold_start: float = 0.55  # a of eq. 18
    threshold_end: float = 0.65  # b of eq. 18
    threshold_every: int = 5000  # n_iter of eq. 18
    threshold_increments: int = 18
    match_points: int | None = None  # None: matching cost on every pixel centre of the mask grid
    split_objects: bool = False  # choice 8: True = one segment per connected sounding object
    min_object_fraction: float = 0.05  # smaller pieces join their class's largest object (of its area)


def object_segments(gt: torch.Tensor, num_classes: int, min_fraction: float = 0.05) -> dict[str, torch.Tensor]:
    """Ground-truth segments of one frame with every sounding class split into its objects (choice 8).

    gt: int64 [H, W] class ids (0 background, 255 ignore) -> {"labels": int64 [G], "masks": float [G, H, W]}:
    background as one segment, and one segment per 8-connected component of each sounding class;
    a component smaller than ``min_fraction`` of its class's largest joins that largest one (so
    specks of an annotation do not become objects of their own).
    """
    per_class = masks_to_targets(gt, num_classes)
    labels, masks = [], []
    for label, mask in zip(per_class["labels"].tolist(), per_class["masks"]):
        if label == 0:
            labels.append(label), masks.append(mask)
            continue
        components, count = ndimage.label(mask.cpu().numpy() > 0, structure=np.ones((3, 3)))
        areas = np.bincount(components.ravel(), minlength=count + 1)[1:]
        largest = int(areas.argmax()) + 1
        merged = np.where(
            np.isin(components, np.flatnonzero(areas < min_fraction * areas.max()) + 1), largest, components
        )
        for component in np.unique(merged[merged > 0]):
            labels.append(label), masks.append(torch.from_numpy(merged == component).to(mask))
    if not labels:
        return per_class
    return {"labels": torch.tensor(labels, dtype=torch.long, device=gt.device), "masks": torch.stack(masks)}


def _upsample(mask_logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of mask logits [N, h, w] -> [N, H, W] (exactly eq. 7 at H x W, see the model)."""
    if tuple(mask_logits.shape[-2:]) == tuple(size):
        return mask_logits
    return F.interpolate(mask_logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


class TransAVSCriterion:
    """Eq. 13: L = l1 L_AQDL + l2 L_AQML + l3 L_class + l4 L_dice.

    Call with the model outputs and the batch::

        outputs = {"pred_logits": [B,T,N,K+1] (last = no object), "pred_masks": [B,T,N,h,w] (logits),
                   "projected_queries": [B,T,N,d] (h(A_q))}
        batch   = {"masks": int64 [B,T,H,W], "labelled": bool [B,T]}

    Returns a dict of scalar tensors: "aqdl", "aqml", "class", "dice" (unweighted), "total"
    (eq. 13) and "delta" (the eq.-18 threshold, no gradient).
    Only frames with ``labelled`` contribute to "class" and "dice".
    """

    def __init__(self, num_classes: int, config: TransAVSLossConfig | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"TransAVSCriterion: num_classes must be >= 2 (class 0 = background), got {num_classes}")
        self.num_classes = num_classes
        self.config = config or TransAVSLossConfig()
        self.matcher = HungarianMatcher(
            cost_class=self.config.weight_class,
            cost_mask=0.0,
            cost_dice=self.config.weight_dice,
            num_points=self.config.match_points,
        )

    def segments(self, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ground-truth segments of one frame [H, W] (choice 8)."""
        if self.config.split_objects:
            return object_segments(gt, self.num_classes, self.config.min_object_fraction)
        return masks_to_targets(gt, self.num_classes)

    def threshold(self, step: int) -> float:
        c = self.config
        return confidence_threshold(step, c.threshold_start, c.threshold_end, c.threshold_every, c.threshold_increments)

    def _focal(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        alpha = self.config.focal_alpha
        if alpha is not None:  # choice 8: 1 - alpha for "no object" (the negatives), alpha for the K categories
            alpha = torch.full((self.num_classes + 1,), alpha, device=logits.device)
            alpha[-1] = 1.0 - self.config.focal_alpha
        return softmax_focal_loss(logits, targets, alpha=alpha, gamma=self.config.focal_gamma, reduction=reduction)

    def __call__(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], step: int = 0
    ) -> dict[str, torch.Tensor]:
        c = self.config
        logits = outputs["pred_logits"]  # [B,T,N,K+1]
        mask_logits = outputs["pred_masks"]  # [B,T,N,h,w]
        projected = outputs["projected_queries"]  # [B,T,N,d]
        gt = batch["masks"]
        labelled = batch["labelled"]
        b, t, n, k = logits.shape
        if k != self.num_classes + 1:
            raise ValueError(
                f"TransAVSCriterion: logits have {k} outputs, criterion expects {self.num_classes} classes + no object"
            )
        if gt.shape[:2] != (b, t) or labelled.shape != (b, t):
            raise ValueError(
                f"TransAVSCriterion: batch['masks'] {tuple(gt.shape)} / batch['labelled'] "
                f"{tuple(labelled.shape)} do not match the predictions' [B,T] = {(b, t)}"
            )
        delta = self.threshold(step)

        # Self-supervised terms on every frame (choices 5, 6).
        sounding = logits.detach().float().softmax(-1)[..., 1:-1].sum(-1)  # p_k, [B,T,N]
        confident = sounding > delta
        loss_aqdl = aqdl_loss(projected.flatten(0, 1), confident.flatten(0, 1), d0=c.d0)
        loss_aqml = aqml_loss(mask_logits.sigmoid().flatten(0, 1), confident.flatten(0, 1))

        # Supervised terms on labelled frames (choices 7-9).
        frames = labelled.nonzero(as_tuple=True)
        frame_logits, frame_masks, frame_gt = logits[frames], mask_logits[frames], gt[frames]  # [L,...]
        targets = [self.segments(one_gt) for one_gt in frame_gt]
        indices = self.matcher(frame_logits.detach(), frame_masks.detach(), targets)
        class_targets = torch.full(
            frame_logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device
        )  # "no object"
        matched_logits, matched_targets, valid_pixels = [], [], []
        for frame, (target, (query_idx, target_idx)) in enumerate(zip(targets, indices)):
            if query_idx.numel() == 0:
                continue
            query_idx, target_idx = query_idx.to(logits.device), target_idx.to(logits.device)
            class_targets[frame, query_idx] = target["labels"][target_idx]
            # eq.-7 masks at ground-truth resolution, with gradient, for the matched queries only
            matched_logits.append(_upsample(frame_masks[frame, query_idx], gt.shape[-2:]))
            matched_targets.append(target["masks"][target_idx])
            valid_pixels.append((frame_gt[frame] != IGNORE_LABEL)[None].expand(len(query_idx), -1, -1))
        num_masks = self._num_masks(sum(target["labels"].numel() for target in targets), logits.device)

        if frames[0].numel():
            loss_class = self._focal(frame_logits, class_targets) / num_masks
        else:  # no labelled frame: zero that still depends on every output (keeps the graph whole)
            loss_class = logits.sum() * 0.0
        if matched_logits:
            pred = torch.cat(matched_logits)
            target = torch.cat(matched_targets)
            valid = torch.cat(valid_pixels)
            # ignored pixels: prediction and target both set to 0 there, so they add nothing to dice
            loss_dice = dice_loss(
                pred.float().masked_fill(~valid, -1e4).flatten(1), (target * valid).flatten(1), num_masks
            )
        else:
            loss_dice = mask_logits.sum() * 0.0

        total = (
            c.weight_aqdl * loss_aqdl
            + c.weight_aqml * loss_aqml
            + c.weight_class * loss_class
            + c.weight_dice * loss_dice
        )
        return {
            "total": total,
            "aqdl": loss_aqdl,
            "aqml": loss_aqml,
            "class": loss_class,
            "dice": loss_dice,
            "delta": torch.tensor(delta, device=logits.device),
        }

    @staticmethod
    def _num_masks(num_segments: int, device: torch.device) -> float:
        """Number of ground-truth segments averaged over distributed workers, at least 1."""
        count = torch.tensor(float(num_segments), device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(count)
            count = count / torch.distributed.get_world_size()
        return max(float(count), 1.0)


__all__ = [
    "TransAVSCriterion",
    "TransAVSLossConfig",
    "aqdl_loss",
    "aqml_loss",
    "confidence_threshold",
]
