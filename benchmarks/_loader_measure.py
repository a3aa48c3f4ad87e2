"""Measurement helpers of ``bench_loader.py``: timed DataLoader passes, read + decode timing, page-cache
eviction and residency, storage per clip, and the ``combo_mnv2`` training step rate.

Each works on the ``{"hdf5": ClipDataset, "combo": ComboLayoutDataset}`` pair from
``_loader_layouts.make_datasets``; what is timed and why is in bench_loader's docstring.
"""

from __future__ import annotations

import os
import pickle
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _bench_common import median
from _loader_layouts import ComboLayoutDataset
from torch.utils.data import DataLoader, Dataset

from pipeline.shards import ShardReader, ShardWriter, shard_file
from train.data import ClipDataset, LengthGroupedSampler, collate_clips, prepare_batch

BATCH = 4
CPU = torch.device("cpu")


# -- reads, batches and timed passes ---------------------------------------------------------------


def read_hdf5_arrays(dataset: ClipDataset, index: int) -> list[np.ndarray]:
    """The shard reads ``ClipDataset.__getitem__`` does for one clip (``ClipDataset.read_arrays``), and
    nothing else (uint8/float arrays)."""
    return [a for a in dataset.read_arrays(index).values() if a is not None]


def read_combo_arrays(dataset: ComboLayoutDataset, index: int) -> list[np.ndarray]:
    """The file reads and decodes ``ComboLayoutDataset.__getitem__`` does for one clip, and nothing else."""
    from PIL import Image

    row = dataset.rows[index]
    T, name = int(row["num_frames"]), row["video_id"].rsplit("/", 1)[-1]
    arrays = [dataset._images("visual_frames", row, T), dataset._images("maskiges", row, T)]
    for k in (int(x) for x in row["labelled"].split()):
        arrays.append(
            np.asarray(Image.open(dataset.root / row["dataset"] / "gt_masks" / row["video_id"] / f"{name}_{k}.png"))
        )
    with open(dataset.root / row["dataset"] / "audio_embeddings" / f"{row['video_id']}.pkl", "rb") as fh:
        arrays.append(pickle.load(fh))
    return arrays


def time_reads(sets: dict[str, Dataset], layout: str) -> dict[str, float]:
    """Wall and CPU ms per clip of reading + decoding every clip once (no tensor work), in-process."""
    read = read_hdf5_arrays if layout == "hdf5" else read_combo_arrays
    dataset = sets[layout]
    read(dataset, 0)  # open the shards
    cpu0, start = cpu_seconds(), time.perf_counter()
    for index in range(len(dataset)):
        read(dataset, index)
    n = len(dataset)
    return {
        "wall_ms_per_clip": 1000 * (time.perf_counter() - start) / n,
        "cpu_ms_per_clip": 1000 * (cpu_seconds() - cpu0) / n,
    }


def batch_plan(lengths: list[int], count: int, epoch: int) -> list[list[int]]:
    """``count`` batches of shuffled clips (LengthGroupedSampler order), epochs concatenated as needed."""
    plan: list[list[int]] = []
    sampler = LengthGroupedSampler(lengths, BATCH, seed=epoch)
    while len(plan) < count:
        sampler.set_epoch(len(plan))
        plan.extend(list(sampler))
    return plan[:count]


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def time_loader(dataset: Dataset, plan: list[list[int]], workers: int, warmup: int, mode: str) -> dict[str, float]:
    """Samples/s of a fresh DataLoader over ``plan`` after ``warmup`` untimed batches. ``mode`` "loader": the
    batches as the DataLoader delivers them (uint8); "prepare": each batch also through ``prepare_batch`` on
    the CPU (float conversion and transposition, jitter, normalisation, int64 masks)."""
    finish = (lambda batch: prepare_batch(batch, CPU)) if mode == "prepare" else (lambda batch: batch)
    loader = DataLoader(
        dataset,
        batch_sampler=plan,
        collate_fn=collate_clips,
        num_workers=workers,
        multiprocessing_context="fork" if workers > 0 else None,
    )
    iterator = iter(loader)
    for _ in range(warmup):
        finish(next(iterator))
    clips = 0
    cpu0, start = cpu_seconds(), time.perf_counter()
    for batch in iterator:
        clips += finish(batch)["frames"].shape[0]
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    del iterator
    out = {"clips": clips, "wall_s": wall, "samples_per_s": clips / wall}
    if workers == 0:
        out["cpu_ms_per_clip"] = 1000 * cpu / clips
    return out


# -- page cache and storage ------------------------------------------------------------------------


def layout_files(sets: dict[str, Dataset]) -> dict[str, list[Path]]:
    ours: ClipDataset = sets["hdf5"]  # type: ignore[assignment]
    shard_paths = sorted({p for c in ours.clips for p in ours._paths(c.dataset, c.shard).values()})
    combo: ComboLayoutDataset = sets["combo"]  # type: ignore[assignment]
    combo_paths = [p for p in combo.root.rglob("*") if p.is_file()]
    return {"hdf5": shard_paths, "combo": combo_paths}


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (other files untouched). Freshly written copies
    still have dirty pages, which DONTNEED skips, so each file is flushed to disk first."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_fraction(paths: list[Path]) -> float | None:
    """Fraction of the files' bytes in the page cache (util-linux fincore), None without it."""
    if shutil.which("fincore") is None:
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    resident = total = 0
    for start in range(0, len(paths), 200):
        chunk = [str(p) for p in paths[start : start + 200]]
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES,SIZE", *chunk], capture_output=True, text=True
        )
        if out.returncode != 0:
            return None
        for line in out.stdout.split("\n"):
            if line.strip():
                res, size = line.split()[:2]  # RES counts whole pages: compare with the page-rounded size
                resident, total = resident + int(res), total + -(-int(size) // page) * page
    return resident / total if total else None


def storage(sets: dict[str, Dataset], files: dict[str, list[Path]], tmp: Path) -> dict[str, dict[str, float]]:
    ours: ClipDataset = sets["hdf5"]  # type: ignore[assignment]
    n = len(ours)
    # The same arrays the loader reads, alone in a shard set written the way the stages write.
    lean = tmp / "lean"
    by_shard: dict[tuple[str, int], list[str]] = {}
    for clip in ours.clips:
        by_shard.setdefault((clip.dataset, clip.shard), []).append(clip.video_id)
    for (dataset, shard), vids in by_shard.items():
        paths = ours._paths(dataset, shard)
        with (
            ShardReader(paths["extract"]) as ext,
            ShardReader(paths["audio"]) as aud,
            ShardReader(paths["proposals"]) as pro,
            ShardWriter(shard_file(lean, dataset, "clips", shard), kind="clips", params_hash="lean") as out,
        ):
            for vid in vids:
                out.write_video(
                    vid,
                    {
                        "frames": ext.read(vid, "frames"),
                        "gt_masks": ext.read(vid, "gt_masks"),
                        "gt_valid": ext.read(vid, "gt_valid"),
                        "maskige": pro.read(vid, "maskige"),
                        "embeddings": aud.read(vid, "embeddings"),
                    },
                )
    lean_bytes = sum(p.stat().st_size for p in lean.rglob("*.h5"))
    shard_bytes = sum(p.stat().st_size for p in files["hdf5"])
    combo_files = [p for p in files["combo"] if p.suffix in (".png", ".pkl")]
    combo_bytes = sum(p.stat().st_size for p in combo_files)
    combo_blocks = sum(p.stat().st_blocks * 512 for p in combo_files)
    return {
        "hdf5 shards (whole files)": {"bytes_per_clip": shard_bytes / n, "files_per_clip": len(files["hdf5"]) / n},
        "hdf5, loader arrays only": {"bytes_per_clip": lean_bytes / n, "files_per_clip": len(by_shard) / n},
        "combo per-file (file sizes)": {"bytes_per_clip": combo_bytes / n, "files_per_clip": len(combo_files) / n},
        "combo per-file (disk blocks)": {"bytes_per_clip": combo_blocks / n, "files_per_clip": len(combo_files) / n},
    }


# -- the model step rate ---------------------------------------------------------------------------


def model_step_rate(batch: dict[str, Any], steps: int, warmup: int, threads: int) -> dict[str, float]:
    """Median seconds of one combo_mnv2 training step (frozen backbone) on ``batch``."""
    from train.loop import set_train_mode
    from train.models import build_model

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_model("combo_mnv2", num_classes=2, audio_dim=int(batch["audio"].shape[-1]))
        for name, param in model.named_parameters():
            if "backbone" in name:
                param.requires_grad_(False)
        optimizer = torch.optim.AdamW(model.parameter_groups(lr=1e-4, weight_decay=0.05, backbone_lr_mult=0.1))
        set_train_mode(model, frozen_backbone=True)
        times, cpus = [], []
        for i in range(warmup + steps):
            cpu0, start = cpu_seconds(), time.perf_counter()
            outputs = model(batch)
            losses = model.compute_losses(outputs, batch)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
            optimizer.step()
            if i >= warmup:
                times.append(time.perf_counter() - start)
                cpus.append(cpu_seconds() - cpu0)
            if not torch.isfinite(losses["total"]):
                raise RuntimeError(f"combo_mnv2 loss became {float(losses['total'])}")
    finally:
        torch.set_num_threads(previous)
    clips = int(batch["frames"].shape[0])
    step = median(times)
    return {
        "step_s": times,
        "median_step_s": step,
        "clips_per_s": clips / step,
        "cpu_ms_per_clip": 1000 * median(cpus) / clips,
    }
