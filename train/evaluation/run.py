"""``evaluate``: score a checkpoint on every dataset of the ``evaluate`` section and write the
evaluation folder (metrics through dvclive, tables, strips, audio, report.json, report.html)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from train.checkpoint import load_model, scoring_size
from train.data import ClipDataset, ClipSource
from train.device import inference_device
from train.evaluation import artefacts
from train.evaluation.memory import release_free_heap
from train.evaluation.metrics_log import log_metrics
from train.evaluation.params import EvalParams
from train.evaluation.scoring import DatasetScores, score_dataset
from train.official_combo import ModelFlags
from train.runlog import read_curves

# What evaluation does not read from a checkpoint: the weights (the model holds its own copy) and the
# resumption state; dropped once the model is built.
WEIGHT_KEYS = ("state_dict", "optimizer", "scheduler", "rng", "tensor_sha256")


def _strips(
    model: torch.nn.Module,
    dataset: ClipDataset,
    scored: DatasetScores,
    cfg: EvalParams,
    out_dir: Path,
    device: torch.device,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The worst and best videos' strips, and the worst video's strip under each negative-audio condition."""
    picks = artefacts.pick_strip_videos(scored.per_video, cfg.overlays)
    shuffled = scored.variants.get("shuffled")
    strips = artefacts.draw_strips(model, dataset, shuffled, picks, scored.per_video, out_dir, device, progress)
    negative = {c: v for c, v in scored.variants.items() if c != "shuffled"}
    if not picks or not negative:
        return strips, []
    worst = picks[0][0]
    drawn = artefacts.draw_negative_strips(
        model, dataset, worst, negative, scored.per_video[worst], out_dir, device, cfg.seed
    )
    return strips, drawn


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
    device: str | None = None,
    model_flags: ModelFlags | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``cfg.datasets`` and write under ``out_dir``: metrics.json (dvclive),
    per_video.csv, per_class/per_class_iou.csv (semantic only), overlays/, audio/, report.json and
    report.html. ``metrics_path``: also write the metrics there. ``train_log``: the run's dvclive folder
    (curves). ``device``: see :func:`train.device.inference_device` (None: CUDA when available).
    ``model_flags``: ``--model`` / ``--task`` / ``--num-classes`` (:func:`train.checkpoint.load_checkpoint`)."""
    out_dir = Path(out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch_device = inference_device(device)
    model, ckpt = load_model(checkpoint, torch_device, model_flags)
    ckpt = {k: v for k, v in ckpt.items() if k not in WEIGHT_KEYS}  # the model holds its own copy
    train_params = ckpt.get("train_params", {})
    size = scoring_size(train_params, cfg.size)
    source = ClipSource.for_inputs(model.inputs, data_root, size)
    metrics: dict[str, Any] = {
        "model": ckpt["model_name"],
        "step": int(ckpt.get("step", 0)),
        "protocol": f"{cfg.videos_per_batch} video(s) per batch",
    }
    per_video, per_class, strips, negative_strips, features = [], [], [], [], {}
    skipped = []  # videos left out (a feature shard lacks them, corrupt gt_valid, ...): never a silent drop
    artefacts.clear_stale(out_dir)
    for name in cfg.datasets:
        dataset = ClipDataset([name], shards, cfg.split, source)
        skipped += [{"dataset": name, "video_id": vid, "reason": why} for vid, why in dataset.skipped]
        if len(dataset) == 0:
            metrics[name] = {"num_videos": 0, "note": f"no '{cfg.split}' clips with all features"}
            metrics[name]["num_skipped"] = len(dataset.skipped)
            continue
        features[name] = dataset.feature_params()
        scored = score_dataset(model, name, dataset, cfg, torch_device, progress)
        metrics[name] = scored.entry
        metrics[name]["num_skipped"] = len(dataset.skipped)
        per_video += scored.per_video_rows
        per_class += scored.per_class_rows
        drawn, drawn_negative = _strips(model, dataset, scored, cfg, out_dir, torch_device, progress)
        strips += drawn
        negative_strips += drawn_negative
        del scored, dataset
        release_free_heap()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_metrics(out_dir, metrics)
    if metrics_path and Path(metrics_path) != out_dir / "metrics.json":
        artefacts.write_json(Path(metrics_path), metrics)
    artefacts.write_tables(out_dir, per_video, per_class)
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
        "skipped": skipped,
        "per_class_iou": per_class,
        "strips": strips,
        "negative_strips": negative_strips,
        "curves": read_curves(Path(train_log), last_step=metrics["step"]) if train_log else {},
    }
    artefacts.write_json(out_dir / "report.json", report)
    from train.report import render_report  # matplotlib: imported once the scoring has freed its memory

    render_report([out_dir], out_dir / "report.html")
    release_free_heap()  # what the interpreter's exit then touches lands on a trimmed heap
    return metrics
