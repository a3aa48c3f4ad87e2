"""Binary metrics (S4, MS3): J (mask IoU) and F (F-measure over 255 thresholds), per batch and accumulated
per video (see the package docstring for the protocol)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch
from torch import Tensor

from train.metrics.common import (
    BINARY_IOU_EPS,
    F_BETA_SQUARED,
    NUM_F_THRESHOLDS,
    PRECISION_RECALL_EPS,
    check_binary_inputs,
    check_valid,
)


def fmeasure_thresholds(
    num_thresholds: int = NUM_F_THRESHOLDS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The AVSBench thresholds ``linspace(0, 1 - 1e-10, num_thresholds)`` -> [K].

    They are built in float32 on the CPU (as AVSBench does; 1 - 1e-10 rounds to 1.0) and then
    converted, so every device compares against bit-identical values.
    """
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
    thresholds = torch.linspace(0.0, 1.0 - 1e-10, num_thresholds, dtype=torch.float32)
    return thresholds.to(device=device, dtype=dtype)


def frame_mask_iou(probs: Tensor, gt: Tensor) -> Tensor:
    """Per-frame AVSBench IoU.

    Args:
        probs: float [N,H,W] probabilities in [0,1]; prediction = ``probs > 0.5``.
        gt: [N,H,W] in {0,1} (bool or integer).

    Returns:
        float64 [N]: ``|P and G| / (|P or G| + 1e-7)``; for a frame with empty ground truth
        ``|not P and not G| / (H*W + 1e-7)``.
    """
    probs, gt = check_binary_inputs(probs, gt, "frame_mask_iou")
    num_pixels = probs.shape[-1] * probs.shape[-2]
    pred = probs > 0.5
    inter = (pred & gt).sum(dim=(1, 2))
    union = (pred | gt).sum(dim=(1, 2))
    empty_gt = gt.sum(dim=(1, 2)) == 0
    inter_no_object = (~pred & ~gt).sum(dim=(1, 2))
    inter = torch.where(empty_gt, inter_no_object, inter)
    union = torch.where(empty_gt, torch.full_like(union, num_pixels), union)
    return inter.double() / (union.double() + BINARY_IOU_EPS)


def fmeasure_curves(probs: Tensor, gt: Tensor, num_thresholds: int = NUM_F_THRESHOLDS) -> tuple[Tensor, Tensor]:
    """Per-frame AVSBench F-measure curves over the thresholds of :func:`fmeasure_thresholds`.

    Each pixel is binned by how many thresholds it reaches (``searchsorted``), so the counts
    for all K thresholds come from one histogram per frame instead of K comparisons.

    Args:
        probs: float [N,H,W] probabilities in [0,1].
        gt: [N,H,W] in {0,1}.
        num_thresholds: K (255 in AVSBench).

    Returns:
        curves: float64 [N,K]: ``F_k = 1.3 P_k R_k / (0.3 P_k + R_k)`` (NaN -> 0) with
            ``P_k = tp_k / (|probs >= t_k| + 1e-20)``, ``R_k = tp_k / (|G| + 1e-20)``.
            Rows of frames with empty ground truth are all 0.
        nonempty: bool [N]: frames whose ground truth is not empty (the frames F averages).
    """
    probs, gt = check_binary_inputs(probs, gt, "fmeasure_curves")
    num_frames = probs.shape[0]
    thresholds = fmeasure_thresholds(num_thresholds, device=probs.device, dtype=probs.dtype)
    flat_probs = probs.reshape(num_frames, -1).contiguous()
    flat_gt = gt.reshape(num_frames, -1)
    # level = number of thresholds <= p, so the pixel is positive at threshold k iff k < level.
    level = torch.searchsorted(thresholds, flat_probs, right=True)
    num_levels = num_thresholds + 1
    binned = level + torch.arange(num_frames, device=probs.device).unsqueeze(1) * num_levels
    total_bins = num_frames * num_levels
    hist_all = torch.bincount(binned.reshape(-1), minlength=total_bins).view(num_frames, num_levels)
    hist_true = torch.bincount(binned[flat_gt], minlength=total_bins).view(num_frames, num_levels)
    # positives at threshold k = pixels with level >= k + 1: reversed cumulative sum of bins 1..K.
    positives = hist_all[:, 1:].flip(1).cumsum(1).flip(1).double()
    true_positives = hist_true[:, 1:].flip(1).cumsum(1).flip(1).double()
    gt_area = flat_gt.sum(dim=1).double().unsqueeze(1)
    precision = true_positives / (positives + PRECISION_RECALL_EPS)
    recall = true_positives / (gt_area + PRECISION_RECALL_EPS)
    curves = (1 + F_BETA_SQUARED) * precision * recall / (F_BETA_SQUARED * precision + recall)
    curves = torch.nan_to_num(curves, nan=0.0)
    nonempty = gt_area.squeeze(1) > 0
    curves = torch.where(nonempty.unsqueeze(1), curves, torch.zeros_like(curves))
    return curves, nonempty


def batch_mask_iou(probs: Tensor, gt: Tensor) -> float:
    """AVSBench ``mask_iou`` of one batch: mean of :func:`frame_mask_iou` over its N frames.

    Args: probs float [N,H,W] in [0,1]; gt [N,H,W] in {0,1}.
    """
    iou = frame_mask_iou(probs, gt)
    if iou.numel() == 0:
        raise ValueError("batch_mask_iou: the batch holds no frame")
    return float(iou.mean())


def batch_fmeasure(probs: Tensor, gt: Tensor, num_thresholds: int = NUM_F_THRESHOLDS) -> float:
    """AVSBench ``Eval_Fmeasure`` of one batch: max over thresholds of the mean curve.

    Args: probs float [N,H,W] in [0,1]; gt [N,H,W] in {0,1}.
    Returns: ``max_k mean_{frames with non-empty gt} F_k``; 0 when every gt frame is empty.
    """
    curves, nonempty = fmeasure_curves(probs, gt, num_thresholds)
    count = int(nonempty.sum())
    if count == 0:
        return 0.0
    return float((curves.sum(0) / count).max())


class BinaryMetricAccumulator:
    """Streams S4/MS3 videos and returns M_J and M_F under the AVSBench formulas.

    Keeps per pending batch only a few sums (frame IoU sum and count, the summed F curve [K]
    and the number of non-empty frames), and per finished batch two floats.

    Args:
        videos_per_batch: how many consecutive videos form one evaluation batch
            (1 = COMBO protocol, 4 = AVSBench test.sh).
        num_thresholds: thresholds of the F curve (255 in AVSBench).

    Example::

        acc = BinaryMetricAccumulator(videos_per_batch=1)
        acc.add_video("vid", probs, gt, valid)   # probs float [T,H,W] in [0,1], gt [T,H,W]
        acc.compute()  # {"M_J", "M_F", "per_video": {"vid": {"J", "F"}}, ...}
    """

    def __init__(self, videos_per_batch: int = 1, num_thresholds: int = NUM_F_THRESHOLDS) -> None:
        if int(videos_per_batch) != videos_per_batch or videos_per_batch < 1:
            raise ValueError(f"videos_per_batch must be a positive integer, got {videos_per_batch}")
        if num_thresholds < 1:
            raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
        self.videos_per_batch = int(videos_per_batch)
        self.num_thresholds = int(num_thresholds)
        self.reset()

    def reset(self) -> None:
        """Forget every video added so far."""
        self._batch_j: list[float] = []
        self._batch_f: list[float] = []
        self._per_video: dict[Hashable, dict[str, float]] = {}
        self._pending_videos = 0
        self._pending_iou_sum = 0.0
        self._pending_frames = 0
        self._pending_curve_sum = torch.zeros(self.num_thresholds, dtype=torch.float64)
        self._pending_nonempty = 0

    @property
    def num_videos(self) -> int:
        return len(self._per_video)

    def add_video(self, video_id: Hashable, probs: Tensor, gt: Tensor, valid: Tensor | None = None) -> dict[str, float]:
        """Score one video and add it to the current batch.

        Args:
            video_id: unique key of the video in ``per_video``.
            probs: float [T,H,W] probabilities in [0,1] (``sigmoid(logits)``).
            gt: [T,H,W] ground truth in {0,1}.
            valid: bool [T], frames that have ground truth (None = all).  Only these frames
                are scored.

        Returns:
            ``{"J": ..., "F": ...}`` of this video evaluated alone (one video per batch).
        """
        where = f"BinaryMetricAccumulator.add_video({video_id!r})"
        if video_id in self._per_video:
            raise ValueError(f"{where}: video id was already added")
        probs, gt = check_binary_inputs(probs, gt, where)
        valid = check_valid(valid, probs.shape[0], probs.device, where)
        if not bool(valid.any()):
            raise ValueError(f"{where}: no frame has ground truth (valid is all False)")
        probs, gt = probs[valid], gt[valid]

        iou = frame_mask_iou(probs, gt)
        curves, nonempty = fmeasure_curves(probs, gt, self.num_thresholds)
        iou_sum = float(iou.sum())
        curve_sum = curves.sum(0).cpu()
        nonempty_count = int(nonempty.sum())
        num_frames = int(iou.numel())

        video_scores = {
            "J": iou_sum / num_frames,
            "F": float((curve_sum / nonempty_count).max()) if nonempty_count else 0.0,
        }
        self._per_video[video_id] = video_scores

        self._pending_videos += 1
        self._pending_iou_sum += iou_sum
        self._pending_frames += num_frames
        self._pending_curve_sum += curve_sum
        self._pending_nonempty += nonempty_count
        if self._pending_videos == self.videos_per_batch:
            batch_j, batch_f = self._pending_scores()
            self._batch_j.append(batch_j)
            self._batch_f.append(batch_f)
            self._pending_videos = 0
            self._pending_iou_sum = 0.0
            self._pending_frames = 0
            self._pending_curve_sum = torch.zeros(self.num_thresholds, dtype=torch.float64)
            self._pending_nonempty = 0
        return dict(video_scores)

    def _pending_scores(self) -> tuple[float, float]:
        batch_j = self._pending_iou_sum / self._pending_frames
        if self._pending_nonempty == 0:
            batch_f = 0.0
        else:
            batch_f = float((self._pending_curve_sum / self._pending_nonempty).max())
        return batch_j, batch_f

    def compute(self) -> dict[str, Any]:
        """Dataset scores; an unfinished last batch counts as a (smaller) batch.

        Returns:
            ``{"M_J": float, "M_F": float, "per_video": {id: {"J", "F"}},
            "num_videos": int, "num_batches": int, "videos_per_batch": int}``;
            M_J / M_F are the unweighted means of the batch values.
        """
        if not self._per_video:
            raise ValueError("BinaryMetricAccumulator.compute: no video was added")
        batch_j, batch_f = list(self._batch_j), list(self._batch_f)
        if self._pending_videos:
            last_j, last_f = self._pending_scores()
            batch_j.append(last_j)
            batch_f.append(last_f)
        return {
            "M_J": sum(batch_j) / len(batch_j),
            "M_F": sum(batch_f) / len(batch_f),
            "per_video": {key: dict(value) for key, value in self._per_video.items()},
            "num_videos": len(self._per_video),
            "num_batches": len(batch_j),
            "videos_per_batch": self.videos_per_batch,
        }
