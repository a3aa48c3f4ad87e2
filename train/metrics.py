"""AVSBench evaluation metrics: M_J / M_F for S4 and MS3, mIoU / F for AVSS.

The numbers reproduce the published AVSBench evaluation functions (OpenNLPLab/AVSBench,
commit f7414af: ``mask_iou``, ``Eval_Fmeasure``, ``calc_color_miou_fscore``); the exact
values they return on fixed inputs are in tests/fixtures/reference (README.md there).
Everything is computed with torch on the device of the inputs (CPU or CUDA), vectorised over
frames, thresholds and classes; sums are reduced in float64 and the accumulators keep only a
few numbers per video (never the predictions).

Binary metrics (S4, MS3), for a *batch* of N frames ``probs [N,H,W]`` (probabilities, i.e.
``sigmoid(logits)``) and ``gt [N,H,W]`` in {0,1}:

* J (``mask_iou``): ``P = probs > 0.5``.  Per frame
  ``IoU = |P and G| / (|P or G| + 1e-7)``; a frame whose ground truth is empty scores
  ``|not P and not G| / (H*W + 1e-7)`` instead.  J of the batch = mean over its N frames.
* F (``Eval_Fmeasure``): frames with empty ground truth are skipped.  For the 255 thresholds
  ``t_k = linspace(0, 1 - 1e-10, 255)`` (float32, so the last one is exactly 1.0) and
  ``B_k = probs >= t_k``: ``precision_k = |B_k and G| / (|B_k| + 1e-20)``,
  ``recall_k = |B_k and G| / (|G| + 1e-20)``,
  ``F_k = (1 + 0.3) precision_k recall_k / (0.3 precision_k + recall_k)`` with NaN -> 0.
  The F curves of the batch's non-empty frames are averaged and the batch scores the maximum
  over k of that mean curve; a batch with no non-empty frame scores 0.

The dataset value (M_J, M_F) is the unweighted mean of the batch values.  Because the maximum
is taken *after* averaging the curves of a batch, F depends on how frames are grouped:

* ``videos_per_batch=1`` (default, the COMBO protocol): each video is one batch.
* ``videos_per_batch=4`` (AVSBench ``test.sh``): consecutive groups of 4 videos in the order
  they are added form a batch (the last one may hold fewer).  J does not depend on the
  grouping when every batch holds the same number of frames.

Semantic metric (AVSS, ``calc_color_miou_fscore``), ``C`` classes (71 with background 0):
for every scored frame and class c, with ``inter_c`` = pixels where prediction == ground truth
== c, ``pred_c`` / ``label_c`` = pixels predicted / labelled c and
``union_c = pred_c + label_c - inter_c``:

* ``IoU_c = inter_c / (union_c + 2.220446049250313e-16)``, counted for that frame when
  ``union_c > 0``;
* ``F_c = 1.3 P_c R_c / (0.3 P_c + R_c)``, ``P_c = inter_c / pred_c``,
  ``R_c = inter_c / label_c``, NaN -> 0.

Per class ``sum over frames / count`` (0 where the count is 0); mIoU and F are the means over
all C classes, background included.  The value is a sum over frames, so it does not depend on
the batch grouping.

Frame selection for the semantic metric: by default only frames with ``valid`` True are
scored (COMBO evaluates real frames only).  AVSBench instead pads every AVSS clip to 10
frames with black images and background labels and scores the padded frames too; with
``pad_to_frames=10`` the accumulator reproduces this: frames with ``valid`` False are scored
against an all-background ground truth (pass the model's predictions on the black padding
frames there to reproduce AVSBench exactly), and a clip shorter than ``pad_to_frames`` is
extended with frames whose prediction and ground truth are both background (the model's
output on a black frame is then assumed to be all background).

Deviation, on purpose: ground-truth pixels equal to ``ignore_index`` (255) are dropped from
prediction and ground truth alike.  AVSBench maps 255 out of its histogram range for the
ground truth but still counts the prediction there as a false positive; its AVSS ground truth
never holds 255, so this does not change any AVSBench number.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch
from torch import Tensor

NUM_F_THRESHOLDS = 255
F_BETA_SQUARED = 0.3
BINARY_IOU_EPS = 1e-7
PRECISION_RECALL_EPS = 1e-20
SEMANTIC_IOU_EPS = 2.220446049250313e-16  # float64 machine epsilon, as AVSBench writes it
IGNORE_INDEX = 255
AVSS_NUM_CLASSES = 71

__all__ = [
    "AVSS_NUM_CLASSES",
    "IGNORE_INDEX",
    "NUM_F_THRESHOLDS",
    "BinaryMetricAccumulator",
    "SemanticMetricAccumulator",
    "batch_fmeasure",
    "batch_mask_iou",
    "class_statistics",
    "class_iou_fscore",
    "fmeasure_curves",
    "fmeasure_thresholds",
    "frame_mask_iou",
]


# ----------------------------------------------------------------------------------------------
# input checks


def _as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}") from error


def _check_binary_inputs(probs: Any, gt: Any, where: str) -> tuple[Tensor, Tensor]:
    """Return ``(probs float32/float64 [N,H,W], gt bool [N,H,W])`` or raise ValueError."""
    probs = _as_tensor(probs, f"{where} probs")
    gt = _as_tensor(gt, f"{where} gt")
    if probs.dim() != 3:
        raise ValueError(f"{where}: probs must have shape [N,H,W], got {tuple(probs.shape)}")
    if gt.shape != probs.shape:
        raise ValueError(
            f"{where}: gt shape {tuple(gt.shape)} differs from probs shape {tuple(probs.shape)}"
        )
    if not probs.is_floating_point():
        raise ValueError(f"{where}: probs must be floating point, got {probs.dtype}")
    if probs.dtype != torch.float64:
        # AVSBench compares float32 probabilities with float32 thresholds.
        probs = probs.float()
    if probs.numel() > 0:
        if not bool(torch.isfinite(probs).all()):
            raise ValueError(f"{where}: probs contain NaN or infinity")
        low, high = float(probs.min()), float(probs.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"{where}: probs must lie in [0,1] (got min {low:.4g}, max {high:.4g}); "
                "apply torch.sigmoid to logits first"
            )
    gt = gt.to(probs.device)
    if gt.dtype != torch.bool:
        if not bool(((gt == 0) | (gt == 1)).all()):
            raise ValueError(f"{where}: gt must hold only 0 and 1")
        gt = gt != 0
    return probs, gt


def _check_valid(valid: Any, num_frames: int, device: torch.device, where: str) -> Tensor:
    """Return ``valid`` as bool [T] on ``device``; None means every frame is labelled."""
    if valid is None:
        return torch.ones(num_frames, dtype=torch.bool, device=device)
    valid = _as_tensor(valid, f"{where} valid").to(device)
    if valid.shape != (num_frames,):
        raise ValueError(
            f"{where}: valid must have shape [T]=({num_frames},), got {tuple(valid.shape)}"
        )
    if valid.dtype != torch.bool:
        if not bool(((valid == 0) | (valid == 1)).all()):
            raise ValueError(f"{where}: valid must be boolean")
        valid = valid != 0
    return valid


# ----------------------------------------------------------------------------------------------
# binary metrics (S4, MS3)


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
    probs, gt = _check_binary_inputs(probs, gt, "frame_mask_iou")
    num_pixels = probs.shape[-1] * probs.shape[-2]
    pred = probs > 0.5
    inter = (pred & gt).sum(dim=(1, 2))
    union = (pred | gt).sum(dim=(1, 2))
    empty_gt = gt.sum(dim=(1, 2)) == 0
    inter_no_object = (~pred & ~gt).sum(dim=(1, 2))
    inter = torch.where(empty_gt, inter_no_object, inter)
    union = torch.where(empty_gt, torch.full_like(union, num_pixels), union)
    return inter.double() / (union.double() + BINARY_IOU_EPS)


def fmeasure_curves(
    probs: Tensor, gt: Tensor, num_thresholds: int = NUM_F_THRESHOLDS
) -> tuple[Tensor, Tensor]:
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
    probs, gt = _check_binary_inputs(probs, gt, "fmeasure_curves")
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

    def add_video(
        self, video_id: Hashable, probs: Tensor, gt: Tensor, valid: Tensor | None = None
    ) -> dict[str, float]:
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
        probs, gt = _check_binary_inputs(probs, gt, where)
        valid = _check_valid(valid, probs.shape[0], probs.device, where)
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


# ----------------------------------------------------------------------------------------------
# semantic metric (AVSS)


def class_statistics(
    pred: Tensor, gt: Tensor, num_classes: int, ignore_index: int | None = IGNORE_INDEX
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
    pred = _as_tensor(pred, f"{where} pred")
    gt = _as_tensor(gt, f"{where} gt").to(pred.device)
    if pred.dim() != 3:
        raise ValueError(f"{where}: pred must have shape [N,H,W], got {tuple(pred.shape)}")
    if gt.shape != pred.shape:
        raise ValueError(
            f"{where}: gt shape {tuple(gt.shape)} differs from pred shape {tuple(pred.shape)}"
        )
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
            f"{where}: gt holds class ids outside [0, {num_classes}) other than "
            f"ignore_index={ignore_index}"
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


def class_iou_fscore(
    area_inter: Tensor, area_pred: Tensor, area_label: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
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
        num_classes: int = AVSS_NUM_CLASSES,
        videos_per_batch: int = 1,
        pad_to_frames: int | None = None,
        ignore_index: int | None = IGNORE_INDEX,
        background_index: int = 0,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if int(videos_per_batch) != videos_per_batch or videos_per_batch < 1:
            raise ValueError(f"videos_per_batch must be a positive integer, got {videos_per_batch}")
        if pad_to_frames is not None and pad_to_frames < 1:
            raise ValueError(f"pad_to_frames must be None or >= 1, got {pad_to_frames}")
        if not 0 <= background_index < num_classes:
            raise ValueError(
                f"background_index {background_index} is outside [0, {num_classes})"
            )
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

    def add_video(
        self, video_id: Hashable, pred: Tensor, gt: Tensor, valid: Tensor | None = None
    ) -> dict[str, float]:
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
        pred = _as_tensor(pred, f"{where} pred")
        gt = _as_tensor(gt, f"{where} gt").to(pred.device)
        if pred.dim() != 3 or gt.shape != pred.shape:
            raise ValueError(
                f"{where}: pred and gt must share shape [T,H,W], got {tuple(pred.shape)} "
                f"and {tuple(gt.shape)}"
            )
        if pred.is_floating_point() or gt.is_floating_point() or pred.dtype == torch.bool:
            raise ValueError(f"{where}: pred and gt must hold integer class ids")
        pred, gt = pred.long(), gt.long()
        valid = _check_valid(valid, pred.shape[0], pred.device, where)

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
                    (missing, *pred.shape[1:]), self.background_index,
                    dtype=torch.long, device=pred.device,
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
