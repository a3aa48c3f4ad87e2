"""Semantic metric (AVSS): per-class IoU and F accumulated over frames, mIoU / mean F over 71 classes
(see the package docstring for the protocol)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch
from torch import Tensor

from pipeline.labels import IGNORE_LABEL, NUM_AVSS_CLASSES
from train.metrics.common import (
    F_BETA_SQUARED,
    SEMANTIC_IOU_EPS,
    as_tensor,
    check_valid,
)


def class_statistics(
    pred: Tensor, gt: Tensor, num_classes: int, ignore_index: int | None = IGNORE_LABEL
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame, per-class pixel counts.

    Args:
        pred: integer [N,H,W] class ids in [0, num_classes).
        gt: integer [N,H,W] class ids in [0, num_classes) or ``ignore_index``.
        num_classes: C.
        ignore_index: ground-truth value whose pixels are dropped (None: no such value).

    Returns:
        ``(area_inter, area_pred, area_label)``, each int64 [N,C].
    """
    where = "class_statistics"
    pred = as_tensor(pred, f"{where} pred")
    gt = as_tensor(gt, f"{where} gt").to(pred.device)
    if pred.dim() != 3:
        raise ValueError(f"{where}: pred must have shape [N,H,W], got {tuple(pred.shape)}")
    if gt.shape != pred.shape:
        raise ValueError(f"{where}: gt shape {tuple(gt.shape)} differs from pred shape {tuple(pred.shape)}")
    if pred.is_floating_point() or gt.is_floating_point() or pred.dtype == torch.bool:
        raise ValueError(
            f"{where}: pred and gt must hold integer class ids, got {pred.dtype} / {gt.dtype} "
            "(take the argmax of the logits first)"
        )
    pred, gt = pred.long(), gt.long()
    labelled = torch.ones_like(gt, dtype=torch.bool) if ignore_index is None else gt != ignore_index
    if pred.numel() and (bool((pred < 0).any()) or bool((pred >= num_classes).any())):
        raise ValueError(f"{where}: pred holds class ids outside [0, {num_classes})")
    gt_in_range = (gt >= 0) & (gt < num_classes)
    if not bool((gt_in_range | ~labelled).all()):
        raise ValueError(
            f"{where}: gt holds class ids outside [0, {num_classes}) other than ignore_index={ignore_index}"
        )
    num_frames = pred.shape[0]
    offsets = (torch.arange(num_frames, device=pred.device) * num_classes).view(-1, 1, 1)
    pred_bins = (pred + offsets)[labelled]
    gt_bins = (gt + offsets)[labelled]
    total = num_frames * num_classes
    area_pred = torch.bincount(pred_bins, minlength=total).view(num_frames, num_classes)
    area_label = torch.bincount(gt_bins, minlength=total).view(num_frames, num_classes)
    area_inter = torch.bincount(gt_bins[pred_bins == gt_bins], minlength=total)
    return area_inter.view(num_frames, num_classes), area_pred, area_label


def class_iou_fscore(area_inter: Tensor, area_pred: Tensor, area_label: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """AVSBench per-frame, per-class IoU and F from :func:`class_statistics` counts.

    Args: three int [N,C] tensors.
    Returns:
        iou: float64 [N,C] ``inter / (union + 2.220446049250313e-16)``.
        fscore: float64 [N,C] ``1.3 P R / (0.3 P + R)``, ``P = inter / pred``,
            ``R = inter / label``, NaN -> 0.
        present: bool [N,C] ``union > 0`` (the frames that count for the class).
    """
    inter, pred, label = area_inter.double(), area_pred.double(), area_label.double()
    union = pred + label - inter
    iou = inter / (union + SEMANTIC_IOU_EPS)
    precision = inter / pred
    recall = inter / label
    fscore = (1 + F_BETA_SQUARED) * precision * recall / (F_BETA_SQUARED * precision + recall)
    fscore = torch.nan_to_num(fscore, nan=0.0)
    return iou, fscore, union > 0


def _class_means(iou_sum: Tensor, f_sum: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Per class ``sum / count`` (0 where count is 0) -> two float64 [C]."""
    safe = count.clamp(min=1).double()
    has = count > 0
    zeros = torch.zeros_like(iou_sum)
    return torch.where(has, iou_sum / safe, zeros), torch.where(has, f_sum / safe, zeros)


class SemanticMetricAccumulator:
    """Streams AVSS videos and returns the 71-class mIoU and F of ``calc_color_miou_fscore``.

    Keeps three float64 [C] sums (IoU sum, F sum, frame count per class).

    Args:
        num_classes: C including background 0 (71 for AVSS).
        videos_per_batch: accepted for symmetry with :class:`BinaryMetricAccumulator`; the AVSS
            metric is a sum over frames, so the grouping of videos cannot change it.
        pad_to_frames: None (COMBO: score frames with ``valid`` True only), or the AVSBench clip
            length (10): frames with ``valid`` False are scored against an all-background
            ground truth, and shorter clips are extended with all-background frames
            (prediction and ground truth).  See the module docstring.
        ignore_index: ground-truth value whose pixels are dropped (None: no such value).
        background_index: class of the padding ground truth.

    Example::

        sacc = SemanticMetricAccumulator(num_classes=71)
        sacc.add_video("vid", pred, gt, valid)  # pred/gt int [T,H,W], valid bool [T]
        sacc.compute()  # {"mIoU", "F", "per_class_iou": [71], "per_class_f": [71], "per_video"}
    """

    def __init__(
        self,
        num_classes: int = NUM_AVSS_CLASSES,
        videos_per_batch: int = 1,
        pad_to_frames: int | None = None,
        ignore_index: int | None = IGNORE_LABEL,
        background_index: int = 0,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if int(videos_per_batch) != videos_per_batch or videos_per_batch < 1:
            raise ValueError(f"videos_per_batch must be a positive integer, got {videos_per_batch}")
        if pad_to_frames is not None and pad_to_frames < 1:
            raise ValueError(f"pad_to_frames must be None or >= 1, got {pad_to_frames}")
        if not 0 <= background_index < num_classes:
            raise ValueError(f"background_index {background_index} is outside [0, {num_classes})")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id")
        self.num_classes = int(num_classes)
        self.videos_per_batch = int(videos_per_batch)
        self.pad_to_frames = pad_to_frames
        self.ignore_index = ignore_index
        self.background_index = int(background_index)
        self.reset()

    def reset(self) -> None:
        """Forget every video added so far."""
        self._iou_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self._f_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self._count = torch.zeros(self.num_classes, dtype=torch.int64)
        self._num_frames = 0
        self._per_video: dict[Hashable, dict[str, float]] = {}

    @property
    def num_videos(self) -> int:
        return len(self._per_video)

    def add_video(self, video_id: Hashable, pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> dict[str, float]:
        """Score one video.

        Args:
            video_id: unique key of the video in ``per_video``.
            pred: integer [T,H,W] predicted class ids (argmax of the logits).
            gt: integer [T,H,W] ground-truth class ids (``ignore_index`` allowed).
            valid: bool [T], frames that have ground truth (None = all).

        Returns:
            ``{"mIoU", "F", "num_frames"}`` of this video alone; its mIoU / F average over the
            classes that occur in the video (prediction or ground truth) only.
        """
        where = f"SemanticMetricAccumulator.add_video({video_id!r})"
        if video_id in self._per_video:
            raise ValueError(f"{where}: video id was already added")
        pred = as_tensor(pred, f"{where} pred")
        gt = as_tensor(gt, f"{where} gt").to(pred.device)
        if pred.dim() != 3 or gt.shape != pred.shape:
            raise ValueError(
                f"{where}: pred and gt must share shape [T,H,W], got {tuple(pred.shape)} and {tuple(gt.shape)}"
            )
        if pred.is_floating_point() or gt.is_floating_point() or pred.dtype == torch.bool:
            raise ValueError(f"{where}: pred and gt must hold integer class ids")
        pred, gt = pred.long(), gt.long()
        valid = check_valid(valid, pred.shape[0], pred.device, where)

        if self.pad_to_frames is None:
            if not bool(valid.any()):
                raise ValueError(f"{where}: no frame has ground truth (valid is all False)")
            pred, gt = pred[valid], gt[valid]
        else:
            # AVSBench padding frames carry an all-background ground truth.
            gt = torch.where(valid.view(-1, 1, 1), gt, torch.full_like(gt, self.background_index))
            missing = self.pad_to_frames - pred.shape[0]
            if missing > 0:
                pad = torch.full(
                    (missing, *pred.shape[1:]),
                    self.background_index,
                    dtype=torch.long,
                    device=pred.device,
                )
                pred, gt = torch.cat([pred, pad]), torch.cat([gt, pad])

        try:
            stats = class_statistics(pred, gt, self.num_classes, self.ignore_index)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        iou, fscore, present = class_iou_fscore(*stats)
        iou_sum = iou.sum(0).cpu()
        f_sum = fscore.sum(0).cpu()
        count = present.sum(0).cpu()
        self._iou_sum += iou_sum
        self._f_sum += f_sum
        self._count += count
        self._num_frames += int(pred.shape[0])

        video_iou, video_f = _class_means(iou_sum, f_sum, count)
        occurring = count > 0
        num_occurring = int(occurring.sum())
        video_scores = {
            "mIoU": float(video_iou[occurring].sum()) / num_occurring if num_occurring else 0.0,
            "F": float(video_f[occurring].sum()) / num_occurring if num_occurring else 0.0,
            "num_frames": int(pred.shape[0]),
        }
        self._per_video[video_id] = video_scores
        return dict(video_scores)

    def compute(self) -> dict[str, Any]:
        """Dataset scores.

        Returns:
            ``{"mIoU": float, "F": float, "per_class_iou": list[C], "per_class_f": list[C],
            "frames_per_class": list[C], "per_video": {id: {"mIoU", "F", "num_frames"}},
            "num_videos": int, "num_frames": int}``.
        """
        if not self._per_video:
            raise ValueError("SemanticMetricAccumulator.compute: no video was added")
        per_class_iou, per_class_f = _class_means(self._iou_sum, self._f_sum, self._count)
        return {
            "mIoU": float(per_class_iou.mean()),
            "F": float(per_class_f.mean()),
            "per_class_iou": per_class_iou.tolist(),
            "per_class_f": per_class_f.tolist(),
            "frames_per_class": self._count.tolist(),
            "per_video": {key: dict(value) for key, value in self._per_video.items()},
            "num_videos": len(self._per_video),
            "num_frames": self._num_frames,
        }
