"""What an evaluation leaves on disk besides its metrics: labelled strips of the worst and best videos
(``overlays/``) and of the worst video under each negative-audio condition (``negative_audio/``), the
audio they were scored with (``audio/``), and the CSV / JSON tables, every file written through
:mod:`pipeline.atomic`."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.atomic import write_bytes, write_csv, write_text
from pipeline.media import AUDIO_RATE
from pipeline.shards import ShardReader, shard_file
from train import overlay
from train.data import ClipDataset, collate_clips
from train.evaluation.negative_audio import COLUMN_NAMES, OffscreenAudio, negative_waveform
from train.outputs import predict_labels
from train.runlog import track

SHUFFLED_COLUMN = "pred., audio shuffled"
ARTEFACT_FOLDERS = ("overlays", "negative_audio", "audio")  # written anew by every evaluation


def clear_stale(out_dir: Path) -> None:
    """Strips and audio of an earlier evaluation must not be shown as this one's: remove the files of
    ``out_dir``'s own artefact folders (nothing else)."""
    for folder in ARTEFACT_FOLDERS:
        for old in (out_dir / folder).glob("*.*"):
            old.unlink()


def pick_strip_videos(per_video: dict[str, dict[str, float]], count: int) -> list[tuple[str, str]]:
    """The ``ceil(count / 2)`` worst and ``floor(count / 2)`` best videos by J (mIoU when semantic),
    worst first: [(vid, "worst" | "best")], each video once."""
    key = "J" if any("J" in s for s in per_video.values()) else "mIoU"
    ranked = sorted(per_video, key=lambda v: (per_video[v][key], v))
    worst = ranked[: (count + 1) // 2]
    best = [v for v in reversed(ranked) if v not in worst][: count // 2]
    return [(v, "worst") for v in worst] + [(v, "best") for v in best]


def write_wav(path: Path, pcm: np.ndarray) -> None:
    """int16 PCM [N] (mono) or [N,C] at AUDIO_RATE -> a wav file."""
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        wav.writeframes(pcm.tobytes())
    write_bytes(path, buffer.getvalue())


def stored_audio(dataset: ClipDataset, index: int) -> np.ndarray | None:
    """Clip ``index``'s audio as ``extract`` stored it (int16 mono at AUDIO_RATE); None if absent."""
    ref = dataset.clips[index]
    with ShardReader(shard_file(dataset.source.data_root, ref.dataset, "extract", ref.shard)) as reader:
        if not reader.has_array(ref.video_id, "audio"):
            return None
        return reader.read(ref.video_id, "audio")


def strip_rows(
    batch: dict[str, Any], predictions: dict[str, np.ndarray], binary: bool
) -> tuple[list[str], list[list[np.ndarray]]]:
    """Column names and one row of uint8 [H,W,3] tiles per second, at the ground-truth size: frame,
    maskige (when the model reads them), ground truth, then one column per entry of ``predictions``
    (column name -> labels [T,H,W])."""
    gt, valid = batch["masks"][0].numpy(), batch["labelled"][0].numpy()
    size = gt.shape[-2:]
    frames = batch["frames"][0].permute(0, 2, 3, 1).numpy()
    maskiges = batch["maskiges"][0].permute(0, 2, 3, 1).numpy() if "maskiges" in batch else None
    columns = ["frame"] + (["maskige"] if maskiges is not None else []) + ["ground truth", *predictions]
    rows = []
    for t in range(gt.shape[0]):
        frame = overlay.fit(np.ascontiguousarray(frames[t]), size)
        row = [frame] + ([overlay.fit(np.ascontiguousarray(maskiges[t]), size)] if maskiges is not None else [])
        row.append(overlay.draw_mask(frame, gt[t], binary) if valid[t] else overlay.unlabelled(frame))
        row += [overlay.draw_mask(frame, labels[t], binary) for labels in predictions.values()]
        rows.append(row)
    return columns, rows


def _labels(model: torch.nn.Module, batch: dict[str, Any], device: torch.device) -> np.ndarray:
    """Labels [T,H,W] of a collated single clip at its ground-truth size."""
    return predict_labels(model, batch, device, batch["masks"].shape[-2:])[1][0].numpy()


def draw_strip(
    model: torch.nn.Module,
    dataset: ClipDataset,
    index: int,
    variants: dict[str, Dataset],
    image: Path,
    device: torch.device,
) -> dict[str, Any]:
    """Clip ``index`` as a labelled strip PNG at ``image``: its prediction, then one prediction per entry
    of ``variants`` (column name -> the dataset with other audio); returns the geometry for the report."""
    batch = collate_clips([dataset[index]])
    predictions = {"prediction": _labels(model, batch, device)}
    for column, variant in variants.items():
        predictions[column] = _labels(model, collate_clips([variant[index]]), device)
    columns, rows = strip_rows(batch, predictions, model.task == "binary")
    overlay.write_strip_png(image, columns, rows)
    return {
        "columns": columns,
        "seconds": len(rows),
        "tile": list(rows[0][0].shape[:2]),
        "header_px": overlay.HEADER_PX,
    }


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
    variants = {SHUFFLED_COLUMN: shuffled} if shuffled is not None else {}
    entries = []
    for vid, rank in track(picks, len(picks), "draw strips", bar=progress):
        i, ref = index[vid], dataset.clips[index[vid]]
        safe = vid.replace("/", "__")
        geometry = draw_strip(model, dataset, i, variants, out_dir / "overlays" / f"{safe}.png", device)
        pcm = stored_audio(dataset, i)
        if pcm is not None:
            write_wav(out_dir / "audio" / f"{safe}.wav", pcm)
        entries.append(
            {
                "dataset": ref.dataset,
                "video_id": ref.video_id,
                "rank": rank,
                "scores": per_video[vid],
                "image": f"overlays/{safe}.png",
                "audio": f"audio/{safe}.wav" if pcm is not None else None,
                **geometry,
            }
        )
    return entries


def _condition_audio(
    condition: str, variant: Dataset, dataset: ClipDataset, index: int, seed: int
) -> np.ndarray | None:
    """The waveform clip ``index`` was scored with under ``condition`` (for the strip's player)."""
    if isinstance(variant, OffscreenAudio):
        donor = variant.donors[index]
        return stored_audio(dataset, donor) if donor is not None else None
    return negative_waveform(condition, dataset.clips[index].num_frames, seed)


@torch.no_grad()
def draw_negative_strips(
    model: torch.nn.Module,
    dataset: ClipDataset,
    vid: str,
    variants: dict[str, Dataset],
    scores: dict[str, float],
    out_dir: Path,
    device: torch.device,
    seed: int,
) -> list[dict[str, Any]]:
    """Video ``vid`` once per negative-audio condition in ``variants``: ``negative_audio/<dataset>__<video>__
    <condition>.png`` (prediction with its own audio next to the prediction under the condition) and the
    audio of the condition in ``audio/``; returns their report entries."""
    i = next(k for k, ref in enumerate(dataset.clips) if f"{ref.dataset}/{ref.video_id}" == vid)
    ref, safe, entries = dataset.clips[i], vid.replace("/", "__"), []
    for condition, variant in variants.items():
        name = f"{safe}__{condition}"
        column = {COLUMN_NAMES[condition]: variant}
        geometry = draw_strip(model, dataset, i, column, out_dir / "negative_audio" / f"{name}.png", device)
        pcm = _condition_audio(condition, variant, dataset, i, seed)
        if pcm is not None:
            write_wav(out_dir / "audio" / f"{name}.wav", pcm)
        entries.append(
            {
                "dataset": ref.dataset,
                "video_id": ref.video_id,
                "rank": "worst",
                "condition": condition,
                "scores": scores,
                "image": f"negative_audio/{name}.png",
                "audio": f"audio/{name}.wav" if pcm is not None else None,
                **geometry,
            }
        )
    return entries


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=float))


def write_table(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """Rows as CSV; columns ``fields``, else every key (dataset and video_id first, the rest sorted)."""
    fields = fields or sorted({k for row in rows for k in row}, key=lambda k: (k not in ("dataset", "video_id"), k))
    write_csv(path, rows, fields)


def write_tables(out_dir: Path, per_video: list[dict[str, Any]], per_class: list[dict[str, Any]]) -> None:
    """``per_video.csv``, and ``per_class/per_class_iou.csv`` where a semantic dataset was scored: the
    folder always exists (a DVC plots folder), so a binary run has no per-class chart, in dvc plots or in
    the report (a table of an earlier semantic run is removed)."""
    write_table(out_dir / "per_video.csv", per_video)
    (out_dir / "per_class").mkdir(parents=True, exist_ok=True)
    (out_dir / "per_class" / "per_class_iou.csv").unlink(missing_ok=True)
    if per_class:
        write_table(out_dir / "per_class" / "per_class_iou.csv", per_class, ["dataset", "class_id", "iou"])
