"""Tests for train/metrics.py: AVSBench reference values and hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.metrics import (
    BinaryMetricAccumulator,
    SemanticMetricAccumulator,
    batch_fmeasure,
    batch_mask_iou,
    class_iou_fscore,
    class_statistics,
    fmeasure_curves,
    fmeasure_thresholds,
    frame_mask_iou,
)

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
TOLERANCE = 1e-6

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, np.ndarray], dict]:
    arrays_path = REFERENCE_DIR / "avs_reference.npz"
    values_path = REFERENCE_DIR / "avs_reference.json"
    with np.load(arrays_path) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    return data, json.loads(values_path.read_text())


def _binary_accumulate(data: dict, videos_per_batch: int, device: str) -> dict:
    logits = torch.from_numpy(data["binary_logits"]).to(device)
    gt = torch.from_numpy(data["binary_gt"]).to(device)
    accumulator = BinaryMetricAccumulator(videos_per_batch=videos_per_batch)
    for index in range(logits.shape[0]):
        valid = torch.ones(logits.shape[1], dtype=torch.bool, device=device)
        accumulator.add_video(f"video{index}", torch.sigmoid(logits[index]), gt[index], valid)
    return accumulator.compute()


# ---------------------------------------------------------------------------------------------
# reference values (AVSBench functions at commit f7414af)


@pytest.mark.parametrize("device", DEVICES)
def test_binary_per_video_matches_reference(reference, device):
    data, values = reference
    expected = values["binary_per_video"]
    result = _binary_accumulate(data, videos_per_batch=1, device=device)
    assert result["num_batches"] == 6
    assert result["M_J"] == pytest.approx(expected["M_J"], abs=TOLERANCE)
    assert result["M_F"] == pytest.approx(expected["M_F"], abs=TOLERANCE)
    for index, (j_value, f_value) in enumerate(zip(expected["per_video_J"], expected["per_video_F"], strict=True)):
        scores = result["per_video"][f"video{index}"]
        assert scores["J"] == pytest.approx(j_value, abs=TOLERANCE), index
        assert scores["F"] == pytest.approx(f_value, abs=TOLERANCE), index


@pytest.mark.parametrize("device", DEVICES)
def test_binary_batch_of_4_videos_matches_reference(reference, device):
    data, values = reference
    expected = values["binary_batch_of_4_videos"]
    result = _binary_accumulate(data, videos_per_batch=4, device=device)
    assert result["num_batches"] == 2  # 4 videos + 2 videos
    assert result["M_J"] == pytest.approx(expected["M_J"], abs=TOLERANCE)
    assert result["M_F"] == pytest.approx(expected["M_F"], abs=TOLERANCE)
    # per-video scores do not depend on the grouping
    per_video = values["binary_per_video"]
    assert result["per_video"]["video3"]["F"] == 0.0
    assert result["per_video"]["video0"]["J"] == pytest.approx(per_video["per_video_J"][0], abs=TOLERANCE)


def test_binary_batch_functions_match_reference(reference):
    data, values = reference
    probs = torch.sigmoid(torch.from_numpy(data["binary_logits"]))
    gt = torch.from_numpy(data["binary_gt"])
    flat_probs, flat_gt = probs.flatten(0, 1), gt.flatten(0, 1)
    batches = [slice(0, 20), slice(20, 30)]
    mean_j = np.mean([batch_mask_iou(flat_probs[b], flat_gt[b]) for b in batches])
    mean_f = np.mean([batch_fmeasure(flat_probs[b], flat_gt[b]) for b in batches])
    assert mean_j == pytest.approx(values["binary_batch_of_4_videos"]["M_J"], abs=TOLERANCE)
    assert mean_f == pytest.approx(values["binary_batch_of_4_videos"]["M_F"], abs=TOLERANCE)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("videos_per_batch", [1, 4])
def test_semantic_matches_reference(reference, device, videos_per_batch):
    data, values = reference
    pred = torch.from_numpy(data["semantic_pred"]).to(device)
    gt = torch.from_numpy(data["semantic_gt"]).to(device)
    accumulator = SemanticMetricAccumulator(num_classes=71, videos_per_batch=videos_per_batch)
    for index in range(pred.shape[0]):
        accumulator.add_video(index, pred[index], gt[index], torch.ones(10, dtype=torch.bool))
    result = accumulator.compute()
    assert result["mIoU"] == pytest.approx(values["semantic_71"]["mIoU"], abs=TOLERANCE)
    assert result["F"] == pytest.approx(values["semantic_71"]["F"], abs=TOLERANCE)
    assert len(result["per_class_iou"]) == 71
    assert result["num_frames"] == 30


# ---------------------------------------------------------------------------------------------
# vectorised F curve against the literal per-threshold loop


def _looped_fmeasure_curve(probs: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """One frame, thresholds one by one, float64: the definition written out plainly."""
    thresholds = fmeasure_thresholds(255).double()
    gt = gt.double()
    curve = torch.zeros(255, dtype=torch.float64)
    for k, threshold in enumerate(thresholds):
        positive = (probs.double() >= threshold).double()
        true_positive = (positive * gt).sum()
        precision = true_positive / (positive.sum() + 1e-20)
        recall = true_positive / (gt.sum() + 1e-20)
        value = 1.3 * precision * recall / (0.3 * precision + recall)
        curve[k] = 0.0 if torch.isnan(value) else value
    return curve


def test_fmeasure_curves_equal_threshold_loop():
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 12, 10, generator=generator)
    probs[0, 0, :4] = torch.tensor([0.0, 1.0, 0.5, fmeasure_thresholds(255)[17].item()])
    gt = (torch.rand(3, 12, 10, generator=generator) > 0.6).to(torch.uint8)
    gt[2] = 0
    curves, nonempty = fmeasure_curves(probs, gt)
    assert curves.shape == (3, 255)
    assert nonempty.tolist() == [True, True, False]
    for frame in range(2):
        torch.testing.assert_close(curves[frame], _looped_fmeasure_curve(probs[frame], gt[frame]))
    assert torch.all(curves[2] == 0)


def test_thresholds_are_avsbench_linspace():
    thresholds = fmeasure_thresholds()
    assert thresholds.dtype == torch.float32 and thresholds.shape == (255,)
    assert thresholds[0].item() == 0.0 and thresholds[-1].item() == 1.0
    assert torch.all(thresholds[1:] > thresholds[:-1])


# ---------------------------------------------------------------------------------------------
# hand-computed binary cases

# gt = [[1,1],[0,0]], probs = [[0.9,0.3],[0.6,0.0]]
#   J: P = {0.9, 0.6} -> inter 1, union 3 -> 1/3
#   F over thresholds t: t=0: P=1/2,R=1 -> 0.5652; 0<t<=0.3: P=2/3,R=1 -> 0.7222;
#   0.3<t<=0.6: P=R=1/2 -> 0.5; 0.6<t<=0.9: P=1,R=1/2 -> 0.65/0.8 = 0.8125; t>0.9: 0
FRAME_A_PROBS = torch.tensor([[[0.9, 0.3], [0.6, 0.0]]])
FRAME_A_GT = torch.tensor([[[1, 1], [0, 0]]], dtype=torch.uint8)
FRAME_A_F = 0.65 / 0.8
# gt = [[1,0],[0,0]], probs = [[0.4,0],[0,0]]: 0<t<=0.4: P=R=1 -> F=1; J = 0 (0.4 < 0.5)
FRAME_B_PROBS = torch.tensor([[[0.4, 0.0], [0.0, 0.0]]])
FRAME_B_GT = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.uint8)


def test_hand_computed_single_frame():
    assert batch_mask_iou(FRAME_A_PROBS, FRAME_A_GT) == pytest.approx(1 / 3, abs=1e-6)
    assert batch_fmeasure(FRAME_A_PROBS, FRAME_A_GT) == pytest.approx(FRAME_A_F, abs=1e-12)
    assert batch_fmeasure(FRAME_B_PROBS, FRAME_B_GT) == pytest.approx(1.0, abs=1e-12)


def test_fmeasure_depends_on_batch_grouping():
    # one batch: mean curve is max on 0<t<=0.3 at (0.7222 + 1) / 2; alone: (0.8125 + 1) / 2
    joint_max = (1.3 * (2 / 3) / 1.2 + 1.0) / 2
    for videos_per_batch, expected_f in [(2, joint_max), (1, (FRAME_A_F + 1.0) / 2)]:
        accumulator = BinaryMetricAccumulator(videos_per_batch=videos_per_batch)
        accumulator.add_video("a", FRAME_A_PROBS, FRAME_A_GT, torch.tensor([True]))
        accumulator.add_video("b", FRAME_B_PROBS, FRAME_B_GT, torch.tensor([True]))
        result = accumulator.compute()
        assert result["M_F"] == pytest.approx(expected_f, abs=1e-12)
        # frame B: 0.4 is below 0.5, so the object is missed: J = 0
        assert result["M_J"] == pytest.approx((1 / 3 + 0.0) / 2, abs=1e-6)
        assert result["per_video"]["a"]["F"] == pytest.approx(FRAME_A_F, abs=1e-12)


def test_empty_gt_frame_scores_true_negatives_and_is_skipped_by_f():
    probs = torch.zeros(2, 4, 4)
    probs[0, 0, :2] = 0.8  # 2 false positives on the empty frame
    probs[1] = 0.9
    gt = torch.zeros(2, 4, 4, dtype=torch.uint8)
    gt[1] = 1  # perfect second frame
    iou = frame_mask_iou(probs, gt)
    assert iou[0].item() == pytest.approx(14 / 16, abs=1e-6)  # |not P and not G| / (H*W)
    assert iou[1].item() == pytest.approx(1.0, abs=1e-6)
    # the empty frame does not enter F: the batch F is the F of frame 1 alone
    assert batch_fmeasure(probs, gt) == pytest.approx(1.0, abs=1e-12)


def test_all_empty_video_scores_f_zero():
    accumulator = BinaryMetricAccumulator()
    probs = torch.zeros(3, 4, 4)
    probs[2] = 0.7  # every pixel of frame 2 predicted foreground
    scores = accumulator.add_video("empty", probs, torch.zeros(3, 4, 4), torch.ones(3, dtype=torch.bool))
    assert scores["F"] == 0.0
    assert scores["J"] == pytest.approx(2 / 3, abs=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("videos_per_batch", [1, 4])
def test_perfect_prediction_scores_one(device, videos_per_batch):
    generator = torch.Generator().manual_seed(1)
    gt = (torch.rand(2, 5, 8, 8, generator=generator) > 0.5).to(device)
    gt[1, 3] = False  # an empty frame predicted empty also scores J = 1
    accumulator = BinaryMetricAccumulator(videos_per_batch=videos_per_batch)
    for index in range(2):
        accumulator.add_video(index, gt[index].float(), gt[index], torch.ones(5, dtype=torch.bool))
    result = accumulator.compute()
    assert result["M_J"] == pytest.approx(1.0, abs=1e-6)
    assert result["M_F"] == pytest.approx(1.0, abs=1e-6)


def test_invalid_frames_are_not_scored():
    probs = torch.zeros(2, 2, 2)
    gt = torch.zeros(2, 2, 2, dtype=torch.uint8)
    gt[1] = 1  # unlabelled frame with a missed object would score J = 0
    accumulator = BinaryMetricAccumulator()
    scores = accumulator.add_video("v", probs, gt, torch.tensor([True, False]))
    assert scores["J"] == pytest.approx(1.0, abs=1e-6)


def test_partial_last_batch_and_compute_is_repeatable():
    accumulator = BinaryMetricAccumulator(videos_per_batch=4)
    for name in "abc":
        accumulator.add_video(name, FRAME_A_PROBS, FRAME_A_GT)
    first = accumulator.compute()
    assert first["num_batches"] == 1 and first["M_F"] == pytest.approx(FRAME_A_F)
    accumulator.add_video("d", FRAME_B_PROBS, FRAME_B_GT)
    accumulator.add_video("e", FRAME_B_PROBS, FRAME_B_GT)
    second = accumulator.compute()
    assert second["num_batches"] == 2 and second["num_videos"] == 5
    assert second == accumulator.compute()


@pytest.mark.parametrize(
    ("probs", "gt", "valid", "message"),
    [
        (torch.full((1, 2, 2), 3.0), torch.zeros(1, 2, 2), None, "sigmoid"),
        (torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2), None, "only 0 and 1"),
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 3), None, "differs"),
        (torch.zeros(2, 2), torch.zeros(2, 2), None, r"\[N,H,W\]"),
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.tensor([False]), "no frame"),
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.tensor([True, True]), "valid"),
    ],
)
def test_binary_bad_input_raises(probs, gt, valid, message):
    with pytest.raises(ValueError, match=message):
        BinaryMetricAccumulator().add_video("bad", probs, gt, valid)


def test_duplicate_video_and_empty_compute_raise():
    accumulator = BinaryMetricAccumulator()
    with pytest.raises(ValueError, match="no video"):
        accumulator.compute()
    accumulator.add_video("v", FRAME_A_PROBS, FRAME_A_GT)
    with pytest.raises(ValueError, match="already added"):
        accumulator.add_video("v", FRAME_A_PROBS, FRAME_A_GT)


# ---------------------------------------------------------------------------------------------
# hand-computed semantic cases (3 classes, 0 = background)


def test_semantic_hand_computed():
    # frame 0: gt [[0,1],[1,2]], pred [[0,1],[2,2]]
    #   class 0: inter 1, pred 1, label 1 -> IoU 1, F 1
    #   class 1: inter 1, pred 1, label 2 -> IoU 1/2, P=1, R=1/2 -> F = 0.65/0.8
    #   class 2: inter 1, pred 2, label 1 -> IoU 1/2, P=1/2, R=1 -> F = 0.65/1.15
    # frame 1: gt all 0, pred all 0 -> class 0 IoU 1, F 1; classes 1, 2 absent (not counted)
    pred = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 0]]])
    gt = torch.tensor([[[0, 1], [1, 2]], [[0, 0], [0, 0]]])
    accumulator = SemanticMetricAccumulator(num_classes=3)
    scores = accumulator.add_video("v", pred, gt, torch.tensor([True, True]))
    result = accumulator.compute()
    assert result["per_class_iou"] == pytest.approx([1.0, 0.5, 0.5], abs=1e-12)
    assert result["per_class_f"] == pytest.approx([1.0, 0.65 / 0.8, 0.65 / 1.15], abs=1e-12)
    assert result["frames_per_class"] == [2, 1, 1]
    assert result["mIoU"] == pytest.approx(2 / 3, abs=1e-12)
    assert result["F"] == pytest.approx((1 + 0.65 / 0.8 + 0.65 / 1.15) / 3, abs=1e-12)
    assert scores["mIoU"] == pytest.approx(2 / 3, abs=1e-12)


def test_semantic_absent_classes_count_in_the_mean():
    pred = gt = torch.zeros(1, 2, 2, dtype=torch.long)
    accumulator = SemanticMetricAccumulator(num_classes=4)
    accumulator.add_video("v", pred, gt)
    result = accumulator.compute()
    assert result["mIoU"] == pytest.approx(0.25, abs=1e-12)  # only background, IoU 1, of 4
    assert result["per_video"]["v"]["mIoU"] == pytest.approx(1.0, abs=1e-12)


def test_semantic_missed_and_hallucinated_class_score_zero():
    # class 1 predicted where gt is 2: both counted with IoU 0 and F 0
    stats = class_statistics(torch.tensor([[[1]]]), torch.tensor([[[2]]]), num_classes=3)
    iou, fscore, present = class_iou_fscore(*stats)
    assert present[0].tolist() == [False, True, True]
    assert iou[0].tolist() == [0.0, 0.0, 0.0] and fscore[0].tolist() == [0.0, 0.0, 0.0]


def test_semantic_invalid_frames_excluded_by_default_and_padded_on_request():
    pred = torch.tensor([[[1, 1], [0, 0]], [[2, 2], [2, 2]]])
    gt = torch.tensor([[[1, 1], [0, 0]], [[255, 255], [255, 255]]])
    valid = torch.tensor([True, False])

    combo = SemanticMetricAccumulator(num_classes=3)
    combo.add_video("v", pred, gt, valid)
    result = combo.compute()
    assert result["num_frames"] == 1
    assert result["per_class_iou"] == pytest.approx([1.0, 1.0, 0.0], abs=1e-12)
    assert result["frames_per_class"] == [1, 1, 0]

    # AVSBench: the unlabelled frame becomes background ground truth (pred 2 there is wrong:
    # class 0 IoU 0, class 2 IoU 0), and 2 more all-background frames pad the clip to 4.
    padded = SemanticMetricAccumulator(num_classes=3, pad_to_frames=4)
    padded.add_video("v", pred, gt, valid)
    result = padded.compute()
    assert result["num_frames"] == 4
    assert result["frames_per_class"] == [4, 1, 1]
    assert result["per_class_iou"] == pytest.approx([3 / 4, 1.0, 0.0], abs=1e-12)
    assert result["per_class_f"] == pytest.approx([3 / 4, 1.0, 0.0], abs=1e-12)


def test_semantic_ignore_pixels_are_dropped():
    pred = torch.tensor([[[1, 2], [0, 0]]])
    gt = torch.tensor([[[1, 255], [0, 0]]])
    accumulator = SemanticMetricAccumulator(num_classes=3)
    accumulator.add_video("v", pred, gt)
    result = accumulator.compute()
    assert result["per_class_iou"] == pytest.approx([1.0, 1.0, 0.0], abs=1e-12)
    assert result["frames_per_class"] == [1, 1, 0]


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (torch.tensor([[[3]]]), torch.tensor([[[0]]]), "pred holds class ids"),
        (torch.tensor([[[0]]]), torch.tensor([[[7]]]), "gt holds class ids"),
        (torch.tensor([[[0.0]]]), torch.tensor([[[0]]]), "integer class ids"),
        (torch.tensor([[[0]]]), torch.tensor([[[0, 0]]]), "share shape"),
    ],
)
def test_semantic_bad_input_raises(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        SemanticMetricAccumulator(num_classes=3).add_video("bad", pred, gt)


def test_semantic_bad_configuration_raises():
    with pytest.raises(ValueError, match="collides"):
        SemanticMetricAccumulator(num_classes=3, ignore_index=2)
    with pytest.raises(ValueError, match="pad_to_frames"):
        SemanticMetricAccumulator(num_classes=3, pad_to_frames=0)
