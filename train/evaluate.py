"""Evaluation on cached shards: AVSBench metrics, per-video CSV, per-class IoU, overlays, and the
audio-dependence check (the same evaluation with audio shuffled across test videos).

Protocols (``evaluate.videos_per_batch``): 1 = one video per batch, COMBO's protocol and the
default; 4 = AVSBench ``test.sh``. J does not depend on it; F does (the F curve is averaged over
the frames of a batch before the maximum is taken).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.atomic import atomic_path
from pipeline.labels import voc_palette
from pipeline.params import NonNegativeInt, PositiveInt, Size2
from train.data import ClipDataset, ClipSource, collate_clips, prepare_batch
from train.checkpoint import build_from_checkpoint, load_checkpoint
from train.metrics import BinaryMetricAccumulator, SemanticMetricAccumulator


@dataclass
class EvalParams:
    """``evaluate`` section of params.yaml."""

    datasets: list[str] = field(default_factory=lambda: ["demo_s4"])  # each scored separately
    split: str = "test"
    videos_per_batch: PositiveInt = 1  # 1: COMBO protocol; 4: AVSBench test.sh
    shuffle_audio: bool = True  # also score with audio shuffled across videos (audio-dependence check)
    overlays: NonNegativeInt = 6  # test videos per dataset drawn as frame | ground truth | prediction
    # Model input size [H, W]; null = the checkpoint's train.inference_size (else its training size). Training on crops of rescaled frames (scale
    # augmentation) teaches the model objects over a range of sizes, so a model trained on 112 crops
    # can be scored on the cached 224 frames: masks come out on a 56x56 grid instead of 28x28.
    size: Size2 | None = None
    seed: NonNegativeInt = 0
    num_workers: NonNegativeInt = 0
    threads: PositiveInt | None = None


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


def _overlay_frames(frames: torch.Tensor) -> np.ndarray:
    """The loader's uint8 [T,3,H,W] frames (before prepare_batch normalises them) -> uint8 [T,H,W,3]."""
    return np.ascontiguousarray(frames.cpu().permute(0, 2, 3, 1).numpy())


def _colourise(labels: np.ndarray, binary: bool) -> np.ndarray:
    """int [H,W] -> uint8 [H,W,3] (binary: white foreground; semantic: the AVSBench VOC palette)."""
    if binary:
        return np.repeat((labels > 0)[..., None] * np.uint8(255), 3, axis=-1).astype(np.uint8)
    return voc_palette(256)[labels.astype(np.uint8)]


def write_overlay(path: Path, frames: np.ndarray, gt: np.ndarray, pred: np.ndarray, valid: np.ndarray,
                  binary: bool) -> None:
    """One PNG: a row per frame, columns = frame | ground truth over frame | prediction over frame."""
    from PIL import Image

    h, w = gt.shape[-2:]
    rows = []
    for t in range(frames.shape[0]):
        frame = np.asarray(Image.fromarray(frames[t]).resize((w, h), Image.BILINEAR))
        cols = [frame]
        for labels, show in ((gt[t], bool(valid[t])), (pred[t], True)):
            colour = _colourise(labels, binary)
            alpha = np.where(labels > 0, 0.6, 0.0)[..., None] if show else np.zeros((h, w, 1))
            cols.append((frame * (1 - alpha) + colour * alpha).astype(np.uint8))
        rows.append(np.concatenate(cols, axis=1))
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp)


@torch.no_grad()
def score(model: torch.nn.Module, dataset: Dataset, cfg: EvalParams, device: torch.device,
          overlay_dir: Path | None = None, progress_desc: str = "evaluate") -> dict[str, Any]:
    """Run the model over every clip (one video at a time) and accumulate the AVSBench metrics."""
    from tqdm.auto import tqdm

    binary = model.task == "binary"
    acc = (BinaryMetricAccumulator(videos_per_batch=cfg.videos_per_batch) if binary
           else SemanticMetricAccumulator(num_classes=model.num_classes, videos_per_batch=cfg.videos_per_batch))
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_clips, num_workers=cfg.num_workers)
    drawn = 0
    for batch in tqdm(loader, desc=progress_desc, unit="video", dynamic_ncols=True):
        gt, valid = batch["masks"][0].long(), batch["labelled"][0]
        if not bool(valid.any()):
            continue
        outputs = model(prepare_batch(batch, device))
        probs = model.predict(outputs, size=tuple(gt.shape[-2:]))[0].float().cpu()
        vid = f"{batch['dataset'][0]}/{batch['video_id'][0]}"
        if binary:
            acc.add_video(vid, probs, gt, valid)
            pred = (probs > 0.5).numpy().astype(np.uint8)
        else:
            pred_t = probs.argmax(1)
            acc.add_video(vid, pred_t, gt, valid)
            pred = pred_t.numpy()
        if overlay_dir is not None and drawn < cfg.overlays:
            safe = vid.replace("/", "__")
            write_overlay(overlay_dir / f"{safe}.png", _overlay_frames(batch["frames"][0]), gt.numpy(), pred,
                          valid.numpy(), binary)
            drawn += 1
    return acc.compute()


def evaluate(checkpoint: str | Path, cfg: EvalParams, data_root: str, shards: list[int], out_dir: str | Path,
             metrics_path: str | Path | None = None) -> dict[str, Any]:
    """Score ``checkpoint`` on ``cfg.datasets`` and write metrics.json, per_video.csv, per_class_iou.csv
    (semantic) and overlays/ under ``out_dir``."""
    out_dir = Path(out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = build_from_checkpoint(ckpt).to(device).eval()
    train_params = ckpt.get("train_params", {})
    size = cfg.size or train_params.get("inference_size") or train_params["size"]
    source = ClipSource.for_inputs(model.inputs, data_root, size)
    metrics: dict[str, Any] = {"model": ckpt["model_name"], "step": int(ckpt.get("step", 0)),
                               "protocol": f"{cfg.videos_per_batch} video(s) per batch"}
    per_video_rows: list[dict[str, Any]] = []
    per_class_rows: list[dict[str, Any]] = []
    for name in cfg.datasets:
        dataset = ClipDataset([name], shards, cfg.split, source)
        if len(dataset) == 0:
            metrics[name] = {"num_videos": 0, "note": f"no '{cfg.split}' clips with all features"}
            continue
        result = score(model, dataset, cfg, device, overlay_dir=out_dir / "overlays", progress_desc=f"evaluate {name}")
        entry = {k: v for k, v in result.items() if k not in ("per_video", "per_class_iou", "per_class_f",
                                                               "frames_per_class")}
        shuffled = None
        if cfg.shuffle_audio and len(dataset) > 1:
            shuffled = score(model, ShuffledAudio(dataset, cfg.seed), cfg, device,
                             progress_desc=f"evaluate {name} (shuffled audio)")
            key = "M_J" if "M_J" in result else "mIoU"
            entry["shuffled_audio"] = {k: v for k, v in shuffled.items() if k in ("M_J", "M_F", "mIoU", "F")}
            entry["audio_dependence"] = result[key] - shuffled[key]
        metrics[name] = entry
        for vid, scores in result["per_video"].items():
            row = {"dataset": name, "video_id": vid.split("/", 1)[1], **scores}
            if shuffled is not None:
                row.update({f"{k}_shuffled_audio": v for k, v in shuffled["per_video"][vid].items()
                            if k in ("J", "F", "mIoU")})
            per_video_rows.append(row)
        if "per_class_iou" in result:
            for cls, iou in enumerate(result["per_class_iou"]):
                if result.get("frames_per_class", [1] * len(result["per_class_iou"]))[cls]:
                    per_class_rows.append({"dataset": name, "class_id": cls, "iou": float(iou)})
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(Path(metrics_path) if metrics_path else out_dir / "metrics.json", metrics)
    _write_csv(out_dir / "per_video.csv", per_video_rows)
    _write_csv(out_dir / "per_class_iou.csv", per_class_rows, fields=["dataset", "class_id", "iou"])
    return metrics


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=float))


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    fields = fields or sorted({k for row in rows for k in row}, key=lambda k: (k not in ("dataset", "video_id"), k))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
