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

from train.metrics.binary import (
    BinaryMetricAccumulator,
    batch_fmeasure,
    batch_mask_iou,
    fmeasure_curves,
    fmeasure_thresholds,
    frame_mask_iou,
)
from train.metrics.common import NUM_F_THRESHOLDS
from train.metrics.semantic import SemanticMetricAccumulator, class_iou_fscore, class_statistics

__all__ = [
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
