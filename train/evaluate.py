"""Evaluation on cached shards: AVSBench metrics, per-video CSV, per-class IoU, the audio-dependence
check (the same evaluation with audio shuffled across test videos), and what a person looks at: for
the worst and the best videos a strip per second (frame | maskige | ground truth | prediction |
prediction with shuffled audio, ``overlays/``) with the clip's audio (``audio/``), gathered with the
training curves in ``report.json`` and rendered as the self-contained ``report.html``
(:mod:`train.report`). Scalars also go through dvclive (``metrics.json``) for ``dvc exp show``.

Protocols (``evaluate.videos_per_batch``): 1 = one video per batch, COMBO's protocol and the
default; 4 = AVSBench ``test.sh``. J does not depend on it; F does (the F curve is averaged over
the frames of a batch before the maximum is taken).
"""

from __future__ import annotations

import csv
import io
import json
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.atomic import atomic_path
from pipeline.media import AUDIO_RATE
from pipeline.params import DatasetName, NonNegativeInt, PositiveInt, Size2, Split
from pipeline.shards import ShardReader, shard_file
from train import overlay
from train.checkpoint import build_from_checkpoint, load_checkpoint
from train.data import ClipDataset, ClipSource, collate_clips, prepare_batch
from train.metrics import BinaryMetricAccumulator, SemanticMetricAccumulator
from train.runlog import read_curves, track


@dataclass
class EvalParams:
    """``evaluate`` section of params.yaml."""

    datasets: list[DatasetName] = field(default_factory=lambda: ["demo_s4"])  # each scored separately
    split: Split = "test"
    videos_per_batch: PositiveInt = 1  # 1: COMBO protocol; 4: AVSBench test.sh
    shuffle_audio: bool = True  # also score with audio shuffled across videos (audio-dependence check)
    overlays: NonNegativeInt = 6  # videos per dataset drawn as strips: the worst half and the best half (by J or mIoU)
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


def scoring_size(train_params: dict[str, Any], override: Sequence[int] | None = None) -> list[int]:
    """The model input [H, W] a checkpoint is scored and run at: ``override`` (``evaluate.size``,
    ``avs predict --size``), else the checkpoint's ``train.inference_size``, else its training size."""
    return list(override or train_params.get("inference_size") or train_params["size"])


def _predict(model: torch.nn.Module, batch: dict[str, Any], device: torch.device) -> np.ndarray:
    """One collated clip -> predicted labels int [T,H,W] at the ground-truth size (binary: 0/1 at p > 0.5)."""
    gt = batch["masks"][0]
    probs = model.predict(model(prepare_batch(batch, device)), size=tuple(gt.shape[-2:]))[0].float().cpu()
    return (probs > 0.5).to(torch.uint8).numpy() if model.task == "binary" else probs.argmax(1).numpy()


@torch.no_grad()
def score(
    model: torch.nn.Module,
    dataset: Dataset,
    cfg: EvalParams,
    device: torch.device,
    progress_desc: str = "evaluate",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the model over every clip (one video at a time) and accumulate the AVSBench metrics.
    ``progress``: a tqdm bar; False: a log line every 30 s instead."""
    binary = model.task == "binary"
    acc = (
        BinaryMetricAccumulator(videos_per_batch=cfg.videos_per_batch)
        if binary
        else SemanticMetricAccumulator(num_classes=model.num_classes, videos_per_batch=cfg.videos_per_batch)
    )
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_clips, num_workers=cfg.num_workers)
    for batch in track(loader, len(dataset), progress_desc, bar=progress):
        gt, valid = batch["masks"][0].long(), batch["labelled"][0]
        if not bool(valid.any()):
            continue
        vid = f"{batch['dataset'][0]}/{batch['video_id'][0]}"
        if binary:
            outputs = model(prepare_batch(batch, device))
            probs = model.predict(outputs, size=tuple(gt.shape[-2:]))[0].float().cpu()
            acc.add_video(vid, probs, gt, valid)  # J/F from probabilities (the F curve needs them)
        else:
            acc.add_video(vid, torch.from_numpy(_predict(model, batch, device)), gt, valid)
    return acc.compute()


def pick_strip_videos(per_video: dict[str, dict[str, float]], count: int) -> list[tuple[str, str]]:
    """The ``ceil(count / 2)`` worst and ``floor(count / 2)`` best videos by J (mIoU when semantic),
    worst first: [(vid, "worst" | "best")], each video once."""
    key = "J" if any("J" in s for s in per_video.values()) else "mIoU"
    ranked = sorted(per_video, key=lambda v: (per_video[v][key], v))
    worst = ranked[: (count + 1) // 2]
    best = [v for v in reversed(ranked) if v not in worst][: count // 2]
    return [(v, "worst") for v in worst] + [(v, "best") for v in best]


def _audio_wav(path: Path, data_root: str, dataset: str, shard: int, video_id: str) -> bool:
    """The clip's audio as stored by ``extract`` (int16 mono at AUDIO_RATE) -> a wav file; False if absent."""
    with ShardReader(shard_file(data_root, dataset, "extract", shard)) as reader:
        if not reader.has_array(video_id, "audio"):
            return False
        pcm = np.ascontiguousarray(reader.read(video_id, "audio"), dtype=np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        wav.writeframes(pcm.tobytes())
    with atomic_path(path, suffix=".wav") as tmp:
        tmp.write_bytes(buffer.getvalue())
    return True


def _strip_rows(
    batch: dict[str, Any], pred: np.ndarray, shuffled: np.ndarray | None, binary: bool
) -> tuple[list[str], list[list[np.ndarray]]]:
    """Column names and one row of uint8 [H,W,3] tiles per second, at the ground-truth size."""
    gt, valid = batch["masks"][0].numpy(), batch["labelled"][0].numpy()
    size = gt.shape[-2:]
    frames = batch["frames"][0].permute(0, 2, 3, 1).numpy()
    maskiges = batch["maskiges"][0].permute(0, 2, 3, 1).numpy() if "maskiges" in batch else None
    columns = ["frame"] + (["maskige"] if maskiges is not None else []) + ["ground truth", "prediction"]
    columns += ["pred., audio shuffled"] if shuffled is not None else []
    rows = []
    for t in range(gt.shape[0]):
        frame = overlay.fit(np.ascontiguousarray(frames[t]), size)
        row = [frame] + ([overlay.fit(np.ascontiguousarray(maskiges[t]), size)] if maskiges is not None else [])
        row.append(overlay.draw_mask(frame, gt[t], binary) if valid[t] else overlay.unlabelled(frame))
        row.append(overlay.draw_mask(frame, pred[t], binary))
        if shuffled is not None:
            row.append(overlay.draw_mask(frame, shuffled[t], binary))
        rows.append(row)
    return columns, rows


@torch.no_grad()
def draw_strips(
    model: torch.nn.Module,
    dataset: ClipDataset,
    shuffled: Dataset | None,
    picks: list[tuple[str, str]],
    per_video: dict[str, dict[str, float]],
    out_dir: Path,
    device: torch.device,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """For each picked video: ``overlays/<dataset>__<video>.png`` (labelled strip, a row per second) and
    ``audio/<dataset>__<video>.wav``; returns their report entries (paths relative to ``out_dir``)."""
    index = {f"{ref.dataset}/{ref.video_id}": i for i, ref in enumerate(dataset.clips)}
    entries = []
    for vid, rank in track(picks, len(picks), "draw strips", bar=progress):
        i, ref = index[vid], dataset.clips[index[vid]]
        batch = collate_clips([dataset[i]])
        pred = _predict(model, batch, device)
        pred_shuffled = _predict(model, collate_clips([shuffled[i]]), device) if shuffled is not None else None
        columns, rows = _strip_rows(batch, pred, pred_shuffled, model.task == "binary")
        safe = vid.replace("/", "__")
        overlay.write_strip_png(out_dir / "overlays" / f"{safe}.png", columns, rows)
        has_audio = _audio_wav(
            out_dir / "audio" / f"{safe}.wav", dataset.source.data_root, ref.dataset, ref.shard, ref.video_id
        )
        entries.append(
            {
                "dataset": ref.dataset,
                "video_id": ref.video_id,
                "rank": rank,
                "scores": per_video[vid],
                "image": f"overlays/{safe}.png",
                "audio": f"audio/{safe}.wav" if has_audio else None,
                "columns": columns,
                "seconds": len(rows),
                "tile": list(rows[0][0].shape[:2]),
                "header_px": overlay.HEADER_PX,
            }
        )
    return entries


def _evaluate_dataset(
    model: torch.nn.Module,
    name: str,
    dataset: ClipDataset,
    cfg: EvalParams,
    device: torch.device,
    out_dir: Path,
    progress: bool,
) -> tuple[dict[str, Any], list[dict], list[dict], list[dict]]:
    """Score one dataset (and with shuffled audio), draw its strips -> (metrics entry, per-video rows,
    per-class rows, strip entries)."""
    result = score(model, dataset, cfg, device, progress_desc=f"evaluate {name}", progress=progress)
    entry = {
        k: v for k, v in result.items() if k not in ("per_video", "per_class_iou", "per_class_f", "frames_per_class")
    }
    shuffled, shuffled_ds = None, None
    if cfg.shuffle_audio and len(dataset) > 1:
        shuffled_ds = ShuffledAudio(dataset, cfg.seed)
        shuffled = score(
            model, shuffled_ds, cfg, device, progress_desc=f"evaluate {name} (shuffled audio)", progress=progress
        )
        key = "M_J" if "M_J" in result else "mIoU"
        entry["shuffled_audio"] = {k: v for k, v in shuffled.items() if k in ("M_J", "M_F", "mIoU", "F")}
        entry["audio_dependence"] = result[key] - shuffled[key]
    per_video_rows = []
    for vid, scores in result["per_video"].items():
        row = {"dataset": name, "video_id": vid.split("/", 1)[1], **scores}
        if shuffled is not None:
            row.update(
                {f"{k}_shuffled_audio": v for k, v in shuffled["per_video"][vid].items() if k in ("J", "F", "mIoU")}
            )
        per_video_rows.append(row)
    per_class_rows = []
    if "per_class_iou" in result:
        for cls, iou in enumerate(result["per_class_iou"]):
            if result["frames_per_class"][cls]:
                per_class_rows.append({"dataset": name, "class_id": cls, "iou": float(iou)})
    picks = pick_strip_videos(result["per_video"], cfg.overlays)
    strips = draw_strips(model, dataset, shuffled_ds, picks, result["per_video"], out_dir, device, progress)
    return entry, per_video_rows, per_class_rows, strips


def evaluate(
    checkpoint: str | Path,
    cfg: EvalParams,
    data_root: str,
    shards: list[int],
    out_dir: str | Path,
    metrics_path: str | Path | None = None,
    *,
    train_log: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``cfg.datasets`` and write under ``out_dir``: metrics.json (dvclive),
    per_video.csv, per_class/per_class_iou.csv (semantic only), overlays/, audio/, report.json and
    report.html.
    ``metrics_path``: also write the metrics there. ``train_log``: the run's dvclive folder (curves)."""
    from train.report import render_report

    out_dir = Path(out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = build_from_checkpoint(ckpt, checkpoint).to(device).eval()
    train_params = ckpt.get("train_params", {})
    size = scoring_size(train_params, cfg.size)
    source = ClipSource.for_inputs(model.inputs, data_root, size)
    metrics: dict[str, Any] = {
        "model": ckpt["model_name"],
        "step": int(ckpt.get("step", 0)),
        "protocol": f"{cfg.videos_per_batch} video(s) per batch",
    }
    per_video, per_class, strips, features = [], [], [], {}
    for stale in ("overlays", "audio"):  # strips of an earlier evaluation must not be shown as this one's
        for old in (out_dir / stale).glob("*.*"):
            old.unlink()
    for name in cfg.datasets:
        dataset = ClipDataset([name], shards, cfg.split, source)
        if len(dataset) == 0:
            metrics[name] = {"num_videos": 0, "note": f"no '{cfg.split}' clips with all features"}
            continue
        features[name] = dataset.feature_params()
        metrics[name], rows, classes, drawn = _evaluate_dataset(model, name, dataset, cfg, device, out_dir, progress)
        per_video += rows
        per_class += classes
        strips += drawn
    out_dir.mkdir(parents=True, exist_ok=True)
    _log_metrics(out_dir, metrics)
    if metrics_path and Path(metrics_path) != out_dir / "metrics.json":
        _write_json(Path(metrics_path), metrics)
    _write_csv(out_dir / "per_video.csv", per_video)
    # per_class/ always exists (a DVC plots folder), the table only where a semantic dataset was scored:
    # a binary run has no per-class chart, in dvc plots or in the report.
    (out_dir / "per_class").mkdir(exist_ok=True)
    (out_dir / "per_class" / "per_class_iou.csv").unlink(missing_ok=True)
    if per_class:
        _write_csv(out_dir / "per_class" / "per_class_iou.csv", per_class, fields=["dataset", "class_id", "iou"])
    report = {
        "checkpoint": str(checkpoint),
        "model": ckpt["model_name"],
        "step": metrics["step"],
        "task": model.task,
        "input_size": size,
        "eval_params": asdict(cfg),
        "train_params": train_params,
        "feature_params": features,
        "metrics": metrics,
        "per_video": per_video,
        "per_class_iou": per_class,
        "strips": strips,
        "curves": read_curves(Path(train_log), last_step=metrics["step"]) if train_log else {},
    }
    _write_json(out_dir / "report.json", report)
    render_report([out_dir], out_dir / "report.html")
    return metrics


def _log_metrics(out_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json through dvclive (what `dvc metrics show` / `dvc exp show` read)."""
    from dvclive import Live

    live = Live(dir=str(out_dir), dvcyaml=None, save_dvc_exp=False)
    live.summary.update(metrics)
    live.end()


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=float))


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    fields = fields or sorted({k for row in rows for k in row}, key=lambda k: (k not in ("dataset", "video_id"), k))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
