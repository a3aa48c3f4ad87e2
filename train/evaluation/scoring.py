"""Scoring: the AVSBench metrics of a model on one dataset, with its own audio, with audio shuffled
across test videos (the audio-dependence check) and under negative audio (:mod:`.negative_audio`).

Protocols (``evaluate.videos_per_batch``): 1 = one video per batch, COMBO's protocol and the
default; 4 = AVSBench ``test.sh``. J does not depend on it; F does (the F curve is averaged over
the frames of a batch before the maximum is taken).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from train.data import ClipDataset, collate_clips
from train.evaluation.memory import release_free_heap
from train.evaluation.negative_audio import (
    ForegroundTally,
    OffscreenAudio,
    ReplacedAudio,
    WaveformFeatures,
    waveform_features_for,
)
from train.evaluation.params import EvalParams
from train.metrics import BinaryMetricAccumulator, SemanticMetricAccumulator
from train.outputs import predict_labels
from train.runlog import track

HEADLINE_KEYS = ("M_J", "M_F", "mIoU", "F")


class ShuffledAudio(Dataset):
    """Wraps a clip dataset so clip i carries the audio of clip ``perm[i]`` (never its own when avoidable)."""

    def __init__(self, base: ClipDataset, seed: int) -> None:
        self.base = base
        gen = np.random.default_rng(seed)
        self.perm = list(range(len(base)))
        by_length: dict[int, list[int]] = {}
        for i, clip in enumerate(base.clips):
            by_length.setdefault(clip.num_frames, []).append(i)
        for members in by_length.values():  # audio only moves between clips of equal T
            if len(members) > 1:
                shift = int(gen.integers(1, len(members)))  # a rotation: nobody keeps their own audio
                order = list(gen.permutation(members))
                for k, i in enumerate(order):
                    self.perm[i] = order[(k + shift) % len(order)]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        donor = self.base[self.perm[index]]
        for key in ("audio", "logmel"):
            if key in item:
                item[key] = donor[key]
        return item


def _accumulator(model: torch.nn.Module, cfg: EvalParams) -> Any:
    if model.task == "binary":
        return BinaryMetricAccumulator(videos_per_batch=cfg.videos_per_batch)
    return SemanticMetricAccumulator(num_classes=model.num_classes, videos_per_batch=cfg.videos_per_batch)


@torch.no_grad()
def score(
    model: torch.nn.Module,
    dataset: Dataset,
    cfg: EvalParams,
    device: torch.device,
    progress_desc: str = "evaluate",
    progress: bool = True,
    metrics: bool = True,
    skip: set[int] | None = None,
) -> dict[str, Any]:
    """Run the model over every clip (one video at a time): the AVSBench metrics over the labelled frames
    (``metrics``) and, under ``"foreground"``, how much it predicts as sounding over all frames
    (:class:`ForegroundTally`). Clips in ``skip`` are left out. ``progress``: a tqdm bar; False: a log
    line every 30 s instead."""
    acc = _accumulator(model, cfg) if metrics else None
    tally = ForegroundTally()
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_clips, num_workers=cfg.num_workers)
    for index, batch in enumerate(track(loader, len(dataset), progress_desc, bar=progress)):
        gt, valid = batch["masks"][0].long(), batch["labelled"][0]
        if index in (skip or ()) or (acc is not None and not bool(valid.any())):
            continue
        vid = f"{batch['dataset'][0]}/{batch['video_id'][0]}"
        scores, labels = predict_labels(model, batch, device, gt.shape[-2:])
        tally.add(vid, labels[0])
        if acc is not None:  # binary: J/F from probabilities (the F curve needs them); semantic: labels
            acc.add_video(vid, scores[0] if model.task == "binary" else labels[0].long(), gt, valid)
    result = acc.compute() if acc is not None else {}
    result["foreground"] = {**tally.compute(), "per_video": tally.per_video}
    release_free_heap()  # the pass's activations, before the next pass or strip allocates its own
    return result


@dataclass
class DatasetScores:
    """Everything scored on one dataset, and the audio variants its strips are drawn with."""

    entry: dict[str, Any]  # the dataset's entry of metrics.json
    per_video: dict[str, dict[str, float]]  # "dataset/video" -> J, F (mIoU, F) with its own audio
    per_video_rows: list[dict[str, Any]]
    per_class_rows: list[dict[str, Any]]
    variants: dict[str, Dataset] = field(default_factory=dict)  # condition -> dataset with that audio


def _foreground(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result["foreground"].items() if k != "per_video"}


def _condition_dataset(
    condition: str, dataset: ClipDataset, features: WaveformFeatures | None, reason: str, seed: int
) -> tuple[Dataset | None, set[int], str]:
    """(the dataset with ``condition``'s audio, clips to leave out, "") or (None, set(), why it is skipped)."""
    if condition != "offscreen":
        return (
            (ReplacedAudio(dataset, features, condition), set(), "") if features is not None else (None, set(), reason)
        )
    variant = OffscreenAudio(dataset, seed)
    without_donor = {i for i, donor in enumerate(variant.donors) if donor is None}
    if len(without_donor) == len(dataset):
        return None, set(), "no other clip of the same length to take audio from"
    return variant, without_donor, ""


def score_negative_audio(
    model: torch.nn.Module, name: str, dataset: ClipDataset, cfg: EvalParams, device: torch.device, progress: bool
) -> tuple[dict[str, Any], dict[str, Dataset], dict[str, dict[str, float]]]:
    """Each negative-audio condition of ``cfg`` -> (its measures or ``{"skipped": reason}``, the datasets
    scored, per video the predicted-area ratio under each condition)."""
    entry: dict[str, Any] = {}
    variants: dict[str, Dataset] = {}
    areas: dict[str, dict[str, float]] = {}
    conditions = cfg.negative_conditions()
    synthetic = [c for c in conditions if c in ("silence", "noise")]
    features, reason = waveform_features_for(dataset, cfg.seed) if synthetic else (None, "")
    for condition in conditions:
        variant, skip, why = _condition_dataset(condition, dataset, features, reason, cfg.seed)
        if variant is None:
            print(f"evaluate {name}: negative audio '{condition}' skipped: {why}", file=sys.stderr)
            entry[condition] = {"skipped": why}
            continue
        desc = f"evaluate {name} ({condition} audio)"
        result = score(model, variant, cfg, device, desc, progress, metrics=False, skip=skip)
        entry[condition] = _foreground(result)
        if isinstance(variant, OffscreenAudio):
            entry[condition]["same_category_donors"] = variant.same_category
        variants[condition] = variant
        for vid, area in result["foreground"]["per_video"].items():
            areas.setdefault(vid, {})[f"area_{condition}"] = area
    return entry, variants, areas


def score_dataset(
    model: torch.nn.Module, name: str, dataset: ClipDataset, cfg: EvalParams, device: torch.device, progress: bool
) -> DatasetScores:
    """Score one dataset with its own audio, with shuffled audio and under negative audio."""
    result = score(model, dataset, cfg, device, progress_desc=f"evaluate {name}", progress=progress)
    entry = {
        k: v
        for k, v in result.items()
        if k not in ("per_video", "per_class_iou", "per_class_f", "frames_per_class", "foreground")
    }
    variants: dict[str, Dataset] = {}
    negative: dict[str, Any] = {"own": _foreground(result)}
    shuffled = None
    if cfg.shuffle_audio and len(dataset) > 1:
        variants["shuffled"] = ShuffledAudio(dataset, cfg.seed)
        shuffled = score(
            model, variants["shuffled"], cfg, device, f"evaluate {name} (shuffled audio)", progress=progress
        )
        key = "M_J" if "M_J" in result else "mIoU"
        entry["shuffled_audio"] = {k: v for k, v in shuffled.items() if k in HEADLINE_KEYS}
        entry["audio_dependence"] = result[key] - shuffled[key]
        negative["shuffled"] = _foreground(shuffled)
    measures, negative_variants, areas = score_negative_audio(model, name, dataset, cfg, device, progress)
    negative.update(measures)
    variants.update(negative_variants)
    entry["negative_audio"] = negative
    rows = []
    for vid, scores in result["per_video"].items():
        row = {"dataset": name, "video_id": vid.split("/", 1)[1], **scores, **areas.get(vid, {})}
        if shuffled is not None:
            row.update(
                {f"{k}_shuffled_audio": v for k, v in shuffled["per_video"][vid].items() if k in ("J", "F", "mIoU")}
            )
        rows.append(row)
    classes = []
    if "per_class_iou" in result:
        for cls, iou in enumerate(result["per_class_iou"]):
            if result["frames_per_class"][cls]:
                classes.append({"dataset": name, "class_id": cls, "iou": float(iou)})
    return DatasetScores(entry, result["per_video"], rows, classes, variants)
