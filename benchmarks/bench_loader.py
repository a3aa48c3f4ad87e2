"""Training data loader throughput: ``train.data.ClipDataset`` over the HDF5 shards against the COMBO
per-file layout (PNG frames + PNG maskiges + PNG ground truth + one audio pickle per video), and
both against the training step rate of ``combo_mnv2``.

Method
------
Inputs. The real demo shards ``data/<dataset>/{extract,audio,proposals}/shard-N.h5`` of every
shard that has all three kinds are copied (same bytes) to benchmarks/results/cache/bench_loader/hdf5/,
so that evicting them from the page cache never touches files other jobs use. Without real shards
(or with ``--synthetic N``) N synthetic clips are written with ``pipeline.shards.ShardWriter``
instead (frames, maskige, embeddings, gt_masks, gt_valid, split/num_seconds, as the stages write).

COMBO layout. From those shards the script writes the layout COMBO / AVSBench read, under
benchmarks/results/cache/bench_loader/combo/: ``visual_frames/<video id>/<name>_<k>.png`` (RGB),
``maskiges/<video id>/<name>_<k>.png`` (RGB, separate tree), ``gt_masks/<video id>/<name>_<k>.png``
(mode L, class ids; only the labelled frames, as AVSBench ships one mask per S4 train clip),
``audio_embeddings/<video id>.pkl`` (the [T,D] float32 array, pickled) and an index CSV
(video id, split, T, labelled frames) like AVSBench's meta-data CSV. PIL writes the PNGs at its
default compression. ``ComboLayoutDataset.__getitem__`` opens T frame PNGs, T maskige PNGs, the GT
PNGs and the pickle, then runs exactly the code ClipDataset runs after reading (``train.data.clip_item``:
uint8 ``Augmentation`` with the same (seed, epoch, index) generator, or ``resize_clip``), so the two
differ only in storage and decoding. Both must give identical items (uint8 frames/maskiges/masks,
labelled, audio, jitter factors; checked on the first clips, with and without augmentation, before
anything is timed). The HDF5 side reads the way ``ClipDataset`` does (array locations recorded when
the dataset is indexed, then plain file reads with gzip chunks inflated by ISA-L when ``isal`` is
installed), the COMBO side decodes PNGs with PIL.

Loader throughput. ``torch.utils.data.DataLoader`` with ``collate_clips``, batch 4, a
``LengthGroupedSampler`` order (shuffled), ``num_workers`` 0 and 2 (fork, as train/loop.py), with
and without augmentation, at 224x224 (the cached size); plus the params.yaml training setting
(112x112, augmentation) with 0 and 2 workers. Each measurement builds a fresh loader, takes ``warmup``
batches untimed (worker start, first file opens), then times ``batches`` more batches: samples/s =
clips / seconds. Every configuration is measured twice, in separate runs, for both layouts alike:

  (a) "loader": the DataLoader alone, i.e. what the loader delivers: collated uint8 batches
      (channels-last images, uint8 masks, per-clip jitter factors). This is the loader comparison the
      issue asks for (>= 3x the per-file layout): on GPU training the batch goes to the GPU as it is and
      ``prepare_batch`` runs there, off the loader's CPU budget.
  (b) "loader + prepare_batch (CPU)": each timed batch also goes through
      ``train.data.prepare_batch(batch, cpu)`` (float32 and channels-first in one pass, colour jitter when
      augmenting, ImageNet normalisation, int64 masks), i.e. what CPU training pays per batch before the
      model. That work is identical for both layouts, so it lowers the ratio without saying anything
      about the storage.

All runs (configuration x layout x mode) go one after another within a repeat (the order rotated each
repeat); the tables give medians over the repeats and ratios of medians (HDF5 / COMBO). With 0
workers the process CPU time of the timed part is recorded too (CPU ms per clip: insensitive to the
other jobs on the shared 2-core machine). The loader runs with torch threads = 1 (what a DataLoader
worker gets).

Cold vs warm reads. For each layout: every file of the layout is evicted from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)`` (only our own copies; residency checked with util-linux
``fincore`` when available), then one pass over all clips with 0 workers and no augmentation
(fresh dataset, so indexing and file opens count; DataLoader alone, as (a)) is "cold", and an immediate
second pass is "warm". This is cold for the guest page cache only: the virtual disk may still be cached
by the host.

Model step rate. ``combo_mnv2`` (num_classes 2, audio_dim from the data), backbone frozen as
``train.freeze_backbone`` does (requires_grad False on parameters whose name contains "backbone",
those modules in eval mode), AdamW over ``parameter_groups()``, torch threads 2. One step =
forward + compute_losses + backward + gradient clipping + optimizer step on a real batch of 4
clips (augmented, from the HDF5 loader) at 112x112 and 224x224; ``model_warmup`` steps untimed,
then the median of ``model_steps`` steps. Reported as clips/s and compared with the loader's
clips/s with ``prepare_batch`` on the CPU ((b): 2 workers, augmentation, same size), and with that
CPU cost per clip (the loader and the model share the same 2 cores during CPU training).

Storage. Bytes per clip of the shard files (whole files: they also hold the waveform, log-mel and
proposal statistics the loader does not read), of a shard set holding only what the loader reads
(written with ShardWriter, same compression), and of the COMBO layout (sum of file sizes, and the
disk blocks allocated, which small files round up to 4 KiB).

    python benchmarks/bench_loader.py            # ~2.5-4 min on the shared 2-core machine
    python benchmarks/bench_loader.py --quick    # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import csv
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import REPO_ROOT, RESULTS_DIR, machine_info, median, moving_frames, print_table, write_json  # noqa: E402

from pipeline.shards import ShardReader, ShardWriter, shard_file  # noqa: E402
from train.data import (
    Augmentation,
    ClipDataset,
    ClipSource,
    LengthGroupedSampler,  # noqa: E402
    augmentation_generator,
    clip_item,
    collate_clips,
    image_tensor,
    label_tensor,
    prepare_batch,
)

CACHE = RESULTS_DIR / "cache" / "bench_loader"
KINDS = ("extract", "audio", "proposals")
BATCH = 4
SPLITS = ("train", "val", "test")
COMPARED_KEYS = ("frames", "maskiges", "masks", "labelled", "audio", "jitter")
CPU = torch.device("cpu")
MODES = ("loader", "prepare")  # (a) the DataLoader alone; (b) DataLoader + prepare_batch on the CPU
MODE_TITLES = {
    "loader": "(a) DataLoader alone (uint8 batches: the loader comparison)",
    "prepare": "(b) DataLoader + prepare_batch(cpu) (what CPU training pays)",
}
LOADER_ONLY_WHY = (
    "the issue's loader comparison: what the DataLoader delivers; on GPU training prepare_batch "
    "runs on the GPU, and on the CPU it is the same work for both layouts"
)


# -- inputs ----------------------------------------------------------------------------------------


def complete_shards(data_root: Path, datasets: list[str]) -> list[tuple[str, int]]:
    """(dataset, shard) pairs whose extract, audio and proposals shards all exist."""
    found = []
    for dataset in datasets:
        for path in sorted((data_root / dataset / "extract").glob("shard-*.h5")):
            shard = int(path.stem.split("-")[1])
            if all(shard_file(data_root, dataset, kind, shard).is_file() for kind in KINDS):
                found.append((dataset, shard))
    return found


def copy_shards(data_root: Path, pairs: list[tuple[str, int]], dest: Path) -> None:
    """Copy the shards (atomically, skipped when size and mtime already match)."""
    for dataset, shard in pairs:
        for kind in KINDS:
            src, dst = shard_file(data_root, dataset, kind, shard), shard_file(dest, dataset, kind, shard)
            if (
                dst.is_file()
                and dst.stat().st_size == src.stat().st_size
                and dst.stat().st_mtime == src.stat().st_mtime
            ):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)


def synthetic_maskige(rng: np.random.Generator, t: int, size: int) -> np.ndarray:
    """uint8 [t,size,size,3]: flat-coloured nested blobs, like an encoded maskige."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((t, size, size, 3), np.uint8)
    for i in range(t):
        for _ in range(int(rng.integers(5, 20))):
            cy, cx = rng.uniform(0, size, 2)
            ry, rx = rng.uniform(4, size / 3, 2)
            out[i][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.integers(0, 256, 3)
    return out


def write_synthetic_shards(
    root: Path, count: int, t: int = 5, size: int = 224, dim: int = 1024
) -> list[tuple[str, int]]:
    """``count`` synthetic clips in one shard of dataset ``synthetic`` (the arrays the stages write)."""
    rng = np.random.default_rng(0)
    ids = [f"synthetic/clip_{i:04d}" for i in range(count)]
    splits = [("train", "val", "test")[i % 3] for i in range(count)]
    with (
        ShardWriter(shard_file(root, "synthetic", "extract", 0), kind="extract", params_hash="synthetic") as ext,
        ShardWriter(shard_file(root, "synthetic", "audio", 0), kind="audio", params_hash="synthetic") as aud,
        ShardWriter(shard_file(root, "synthetic", "proposals", 0), kind="proposals", params_hash="synthetic") as pro,
    ):
        for i, (vid, split) in enumerate(zip(ids, splits)):
            frames = moving_frames(t, size, size, seed=i)
            gt = (frames[..., 0] > 160).astype(np.uint8)
            valid = np.zeros(t, bool)
            valid[0 if split == "train" else slice(None)] = True
            gt[~valid] = 0
            ext.write_video(
                vid, {"frames": frames, "gt_masks": gt, "gt_valid": valid}, attrs={"split": split, "num_seconds": t}
            )
            aud.write_video(
                vid, {"embeddings": rng.standard_normal((t, dim)).astype(np.float32)}, attrs={"num_seconds": t}
            )
            pro.write_video(vid, {"maskige": synthetic_maskige(rng, t, size)}, attrs={"num_frames": t})
    return [("synthetic", 0)]


# -- COMBO per-file layout -------------------------------------------------------------------------


def combo_index_path(root: Path) -> Path:
    return root / "index.csv"


def build_combo_layout(hdf5_root: Path, pairs: list[tuple[str, int]], root: Path) -> None:
    """Write the COMBO/AVSBench per-file copy of every clip of ``pairs`` (see the module docstring).

    Built in a temporary folder and renamed into place; rebuilt when the source shards changed."""
    from PIL import Image

    stamp = repr(
        sorted(
            (str(p), p.stat().st_size, p.stat().st_mtime)
            for d, s in pairs
            for k in KINDS
            for p in [shard_file(hdf5_root, d, k, s)]
        )
    )
    if (root / "SOURCE").is_file() and (root / "SOURCE").read_text() == stamp:
        return
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for dataset, shard in pairs:
        readers = {k: ShardReader(shard_file(hdf5_root, dataset, k, shard)) for k in KINDS}
        try:
            for vid in readers["extract"].video_ids():
                if not (readers["audio"].has(vid) and readers["proposals"].has(vid)):
                    continue
                attrs = readers["extract"].video_attrs(vid)
                name = vid.rsplit("/", 1)[-1]
                frames = readers["extract"].read(vid, "frames")
                maskige = readers["proposals"].read(vid, "maskige")
                gt = readers["extract"].read(vid, "gt_masks")
                valid = readers["extract"].read(vid, "gt_valid").astype(bool)
                for tree, images in (("visual_frames", frames), ("maskiges", maskige)):
                    folder = tmp / dataset / tree / vid
                    folder.mkdir(parents=True, exist_ok=True)
                    for k, image in enumerate(images, start=1):
                        Image.fromarray(image).save(folder / f"{name}_{k}.png")
                folder = tmp / dataset / "gt_masks" / vid
                folder.mkdir(parents=True, exist_ok=True)
                for k in np.flatnonzero(valid):
                    Image.fromarray(gt[k]).save(folder / f"{name}_{k + 1}.png")
                audio_path = tmp / dataset / "audio_embeddings" / f"{vid}.pkl"
                audio_path.parent.mkdir(parents=True, exist_ok=True)
                with open(audio_path, "wb") as fh:
                    pickle.dump(readers["audio"].read(vid, "embeddings"), fh, protocol=pickle.HIGHEST_PROTOCOL)
                rows.append(
                    {
                        "dataset": dataset,
                        "video_id": vid,
                        "split": attrs.get("split", ""),
                        "num_frames": int(frames.shape[0]),
                        "frame_size": f"{frames.shape[1]}x{frames.shape[2]}",
                        "labelled": " ".join(str(k + 1) for k in np.flatnonzero(valid)),
                    }
                )
        finally:
            for reader in readers.values():
                reader.close()
    with open(combo_index_path(tmp), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "SOURCE").write_text(stamp)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)


class ComboLayoutDataset(Dataset):
    """The COMBO/AVSBench way of loading a clip: one PNG per frame and maskige, GT PNGs of the labelled
    frames, one audio pickle per video. After decoding it runs ``train.data.clip_item``, the code
    :class:`train.data.ClipDataset` runs after reading, so items are identical (same keys, dtypes, shapes,
    augmentation randomness from (seed, epoch, index))."""

    def __init__(
        self,
        root: Path,
        video_ids: list[str],
        size: tuple[int, int],
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        with open(combo_index_path(self.root), newline="") as fh:
            rows = {r["video_id"]: r for r in csv.DictReader(fh)}
        missing = [v for v in video_ids if v not in rows]
        if missing:
            raise KeyError(f"{combo_index_path(self.root)}: no rows for {missing[:3]} (rebuild the layout)")
        self.rows = [rows[v] for v in video_ids]  # same order as the ClipDataset it is compared with
        self.source = ClipSource(size=size)
        self.augmentation, self.seed, self.epoch = augmentation, seed, 0

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _images(self, tree: str, row: dict[str, str], count: int) -> np.ndarray:
        from PIL import Image

        name = row["video_id"].rsplit("/", 1)[-1]
        folder = self.root / row["dataset"] / tree / row["video_id"]
        return np.stack(
            [np.asarray(Image.open(folder / f"{name}_{k}.png").convert("RGB")) for k in range(1, count + 1)]
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image

        row = self.rows[index]
        T, name = int(row["num_frames"]), row["video_id"].rsplit("/", 1)[-1]
        frames = image_tensor(self._images("visual_frames", row, T))
        maskiges = image_tensor(self._images("maskiges", row, T))
        masks = np.zeros((T, *frames.shape[-2:]), np.uint8)
        labelled = torch.zeros(T, dtype=torch.bool)
        for k in (int(x) for x in row["labelled"].split()):
            masks[k - 1] = np.asarray(
                Image.open(self.root / row["dataset"] / "gt_masks" / row["video_id"] / f"{name}_{k}.png")
            )
            labelled[k - 1] = True
        with open(self.root / row["dataset"] / "audio_embeddings" / f"{row['video_id']}.pkl", "rb") as fh:
            audio = torch.from_numpy(pickle.load(fh)).float()
        gen = augmentation_generator(self.seed, self.epoch, index) if self.augmentation is not None else None
        return clip_item(
            frames,
            maskiges,
            label_tensor(masks),
            labelled,
            audio,
            self.source,
            self.augmentation,
            gen,
            index=index,
            video_id=row["video_id"],
            dataset=row["dataset"],
        )


# -- measurement helpers ---------------------------------------------------------------------------


def make_datasets(
    hdf5_root: Path, combo_root: Path, datasets: list[str], shards: list[int], size: int, augment: bool
) -> dict[str, Dataset]:
    aug = Augmentation((size, size)) if augment else None
    ours = ClipDataset(datasets, shards, SPLITS, ClipSource(data_root=str(hdf5_root), size=(size, size)), aug)
    combo = ComboLayoutDataset(combo_root, [c.video_id for c in ours.clips], (size, size), aug)
    return {"hdf5": ours, "combo": combo}


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


def check_identical(sets: dict[str, Dataset], count: int) -> bool:
    for index in range(min(count, len(sets["hdf5"]))):
        a, b = sets["hdf5"][index], sets["combo"][index]
        for key in COMPARED_KEYS:
            if (key in a) != (key in b) or (key in a and not torch.equal(a[key], b[key])):
                raise AssertionError(f"clip {index} ({a['video_id']}): {key} differs between the layouts")
    return True


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
        set_train_mode(model, freeze_backbone=True)
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


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_loader.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="smoke run: few batches, 1 repeat, few model steps")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data", help="where the real shards are")
    parser.add_argument("--datasets", nargs="+", default=["demo_s4"], help="datasets to read (default demo_s4)")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="use N synthetic clips instead of the real shards (also the fallback when none exist)",
    )
    parser.add_argument("--batches", type=int, help="timed batches per measurement (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed batches per measurement (default 2, quick 1)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3, quick 1)")
    parser.add_argument("--model-steps", type=int, help="timed training steps per size (default 3, quick 1)")
    args = parser.parse_args(argv)
    batches = args.batches or (3 if args.quick else 10)
    warmup = args.warmup or (1 if args.quick else 2)
    repeats = args.repeats or (1 if args.quick else 3)
    model_steps = args.model_steps or (1 if args.quick else 3)
    torch.set_num_threads(1)
    began = time.perf_counter()

    pairs = [] if args.synthetic else complete_shards(args.data_root, args.datasets)
    if pairs:
        hdf5_root, origin = CACHE / "hdf5", f"real shards {pairs} under {args.data_root}"
        copy_shards(args.data_root, pairs, hdf5_root)
    else:
        count = args.synthetic or 40
        hdf5_root, origin = CACHE / "synthetic_hdf5", f"{count} synthetic clips"
        shutil.rmtree(hdf5_root, ignore_errors=True)
        pairs = write_synthetic_shards(hdf5_root, count)
        print(f"no complete real shards for {args.datasets} under {args.data_root}: using {origin}", flush=True)
    combo_root = CACHE / ("combo" if hdf5_root.name == "hdf5" else "synthetic_combo")
    datasets, shards = sorted({d for d, _ in pairs}), sorted({s for _, s in pairs})
    build_combo_layout(hdf5_root, pairs, combo_root)

    configs = [(aug, workers, 224) for aug in (False, True) for workers in (0, 2)] + [(True, 0, 112), (True, 2, 112)]
    sets = {(aug, size): make_datasets(hdf5_root, combo_root, datasets, shards, size, aug) for aug, _, size in configs}
    n_clips = len(sets[(False, 224)]["hdf5"])
    print(f"{n_clips} clips from {origin}; checking that both layouts give identical tensors", flush=True)
    for pair in sets.values():
        check_identical(pair, 3)
    lengths = [c.num_frames for c in sets[(False, 224)]["hdf5"].clips]
    files = layout_files(sets[(False, 224)])

    loader: dict[str, list[dict[str, float]]] = {}
    cold: dict[str, list[dict[str, Any]]] = {"hdf5": [], "combo": []}
    reads: dict[str, list[dict[str, float]]] = {"hdf5": [], "combo": []}
    runs = [(layout, mode, *cfg) for cfg in configs for mode in MODES for layout in ("hdf5", "combo")]
    cold_plan = [list(range(i, min(i + BATCH, n_clips))) for i in range(0, n_clips, BATCH)]
    for rep in range(repeats):
        rotated = runs[rep % len(runs) :] + runs[: rep % len(runs)]
        plan = batch_plan(lengths, warmup + batches, epoch=rep)
        for layout, mode, aug, workers, size in rotated:
            dataset = sets[(aug, size)][layout]
            dataset.set_epoch(rep)
            result = time_loader(dataset, plan, workers, warmup, mode)
            loader.setdefault(f"{layout}|{mode}|{aug}|{workers}|{size}", []).append(result)
        for layout in ("hdf5", "combo") if rep % 2 == 0 else ("combo", "hdf5"):
            evict(files[layout])
            before = resident_fraction(files[layout])
            passes = {}
            for name in ("cold", "warm"):
                start = time.perf_counter()  # indexing the dataset (opening and locating) counts
                fresh = make_datasets(hdf5_root, combo_root, datasets, shards, 224, False)[layout]
                for _batch in DataLoader(fresh, batch_sampler=cold_plan, collate_fn=collate_clips, num_workers=0):
                    pass  # the DataLoader alone, as mode (a)
                passes[name] = n_clips / (time.perf_counter() - start)
            cold[layout].append(
                {
                    "resident_before_cold": before,
                    "cold_samples_per_s": passes["cold"],
                    "warm_samples_per_s": passes["warm"],
                }
            )
            reads[layout].append(time_reads(sets[(False, 224)], layout))
        print(f"repeat {rep + 1}/{repeats} done ({time.perf_counter() - began:.0f} s)", flush=True)

    def med(layout: str, mode: str, aug: bool, workers: int, size: int, key: str = "samples_per_s") -> float:
        return median(r[key] for r in loader[f"{layout}|{mode}|{aug}|{workers}|{size}"])

    rows, cpu_rows, results = [], [], []
    for aug, workers, size in configs:
        entry: dict[str, Any] = {"size": size, "augment": aug, "num_workers": workers}
        row: list[Any] = [f"{size}x{size}", "yes" if aug else "no", workers]
        cpu_row: list[Any] = [f"{size}x{size}", "yes" if aug else "no"]
        for mode in MODES:
            h, c = med("hdf5", mode, aug, workers, size), med("combo", mode, aug, workers, size)
            hc = med("hdf5", mode, aug, workers, size, "cpu_ms_per_clip") if workers == 0 else float("nan")
            cc = med("combo", mode, aug, workers, size, "cpu_ms_per_clip") if workers == 0 else float("nan")
            row += [h, c, f"{h / c:.2f}x"]
            cpu_row += [hc, cc, f"{cc / hc:.2f}x"]
            entry["loader_only" if mode == "loader" else "loader_plus_prepare_batch_cpu"] = {
                "hdf5_samples_per_s": h,
                "combo_samples_per_s": c,
                "ratio": h / c,
                "hdf5_cpu_ms_per_clip": hc,
                "combo_cpu_ms_per_clip": cc,
                "cpu_ratio": cc / hc if workers == 0 else float("nan"),
                "hdf5_runs": loader[f"hdf5|{mode}|{aug}|{workers}|{size}"],
                "combo_runs": loader[f"combo|{mode}|{aug}|{workers}|{size}"],
            }
        rows.append(row)
        if workers == 0:
            cpu_rows.append(cpu_row)
        results.append(entry)
    tables = [
        print_table(
            [
                "size",
                "augment",
                "workers",
                "(a) hdf5 clips/s",
                "(a) combo clips/s",
                "(a) hdf5/combo",
                "(b) hdf5 clips/s",
                "(b) combo clips/s",
                "(b) hdf5/combo",
            ],
            rows,
            title=f"\nLoader throughput, batch {BATCH}, {batches} timed batches after {warmup} warm-up, median of {repeats} "
            f"interleaved repeats; {n_clips} clips ({origin}); {os.cpu_count()} shared cores\n"
            f"{MODE_TITLES['loader']}; {MODE_TITLES['prepare']}",
        ),
        print_table(
            [
                "size",
                "augment",
                "(a) hdf5 cpu ms/clip",
                "(a) combo cpu ms/clip",
                "(a) cpu combo/hdf5",
                "(b) hdf5 cpu ms/clip",
                "(b) combo cpu ms/clip",
                "(b) cpu combo/hdf5",
            ],
            cpu_rows,
            title="\nCPU time per clip of the same runs with 0 workers (process user + system; robust to the other jobs)",
        ),
    ]

    cold_rows = []
    for layout in ("hdf5", "combo"):
        res = [r["resident_before_cold"] for r in cold[layout] if r["resident_before_cold"] is not None]
        c, w = (
            median(r["cold_samples_per_s"] for r in cold[layout]),
            median(r["warm_samples_per_s"] for r in cold[layout]),
        )
        cold_rows.append([layout, f"{100 * max(res):.0f}%" if res else "n/a", c, w, f"{w / c:.2f}x"])
    tables.append(
        print_table(
            ["layout", "resident before cold (max)", "cold clips/s", "warm clips/s", "warm/cold"],
            cold_rows,
            title=f"\nOne pass over all {n_clips} clips, DataLoader alone (a), 0 workers, no augmentation, 224x224, fresh "
            f"dataset each pass (indexing included); cold = after posix_fadvise(DONTNEED) on the layout's files (guest "
            f"page cache only); median of {repeats}",
        )
    )

    read_rows = []
    for layout in ("hdf5", "combo"):
        w = median(r["wall_ms_per_clip"] for r in reads[layout])
        c = median(r["cpu_ms_per_clip"] for r in reads[layout])
        read_rows.append([layout, w, c])
    wh, wc = read_rows[0][1], read_rows[1][1]
    ch, cc = read_rows[0][2], read_rows[1][2]
    read_rows.append(["combo/hdf5", f"{wc / wh:.2f}x", f"{cc / ch:.2f}x"])
    tables.append(
        print_table(
            ["layout", "wall ms/clip", "cpu ms/clip"],
            read_rows,
            title=f"\nRead + decode only (the same file reads as each dataset's __getitem__, arrays left as numpy: "
            f"no float conversion, augmentation, normalisation or collate), in-process, warm; median of {repeats}",
        )
    )

    model_rows, model = [], {}
    for size in (112, 224):
        probe = make_datasets(hdf5_root, combo_root, datasets, shards, size, True)["hdf5"]
        batch = prepare_batch(collate_clips([probe[i] for i in range(BATCH)]), CPU)
        rate = model_step_rate(batch, model_steps, 1, threads=2)
        key = (True, 2, size)
        load_h = med("hdf5", "prepare", *key) if key in configs else float("nan")
        load_c = med("combo", "prepare", *key) if key in configs else float("nan")
        cpu_h = med("hdf5", "prepare", True, 0, size, "cpu_ms_per_clip")
        model[size] = {
            **rate,
            "loader_plus_prepare_hdf5_clips_per_s": load_h,
            "loader_plus_prepare_combo_clips_per_s": load_c,
        }
        model_rows.append(
            [
                f"{size}x{size}",
                rate["median_step_s"],
                rate["clips_per_s"],
                rate["cpu_ms_per_clip"],
                load_h,
                f"{load_h / rate['clips_per_s']:.1f}x",
                load_c,
                f"{load_c / rate['clips_per_s']:.1f}x",
                f"{100 * cpu_h / (cpu_h + rate['cpu_ms_per_clip']):.0f}%",
            ]
        )
    tables.append(
        print_table(
            [
                "size",
                "step s",
                "model clips/s",
                "model cpu ms/clip",
                "hdf5 (b) clips/s",
                "hdf5/model",
                "combo (b) clips/s",
                "combo/model",
                "loader share of cpu",
            ],
            model_rows,
            title=f"\ncombo_mnv2 training step on the CPU (frozen backbone, batch {BATCH} x 5 frames, 2 threads, median of "
            f"{model_steps}) vs the loader + prepare_batch(cpu) ((b), 2 workers, augmentation, same size); loader share = "
            "hdf5 (b) cpu ms/clip (0 workers, augmentation, same size) / (that + model cpu ms/clip)",
        )
    )

    with tempfile.TemporaryDirectory(prefix="avs-bench-loader-") as tmp:
        store = storage(sets[(False, 224)], files, Path(tmp))
    base = store["hdf5, loader arrays only"]["bytes_per_clip"]
    tables.append(
        print_table(
            ["layout", "KiB per clip", "files per clip", "vs hdf5 loader arrays"],
            [
                [k, v["bytes_per_clip"] / 1024, v["files_per_clip"], f"{v['bytes_per_clip'] / base:.2f}x"]
                for k, v in store.items()
            ],
            title=f"\nStorage per clip ({n_clips} clips, T = 5, 224x224)",
        )
    )

    total = time.perf_counter() - began
    print(f"\ntotal {total:.0f} s")
    write_json(
        args.out,
        {
            "benchmark": "bench_loader",
            "quick": args.quick,
            "input": origin,
            "clips": n_clips,
            "batch_size": BATCH,
            "timed_batches": batches,
            "warmup_batches": warmup,
            "repeats": repeats,
            "machine": machine_info(),
            "modes": {
                "loader_only": MODE_TITLES["loader"] + ": " + LOADER_ONLY_WHY,
                "loader_plus_prepare_batch_cpu": MODE_TITLES["prepare"],
            },
            "loader": results,
            "cold_warm": cold,
            "read_decode_only": reads,
            "model": model,
            "storage": store,
            "total_s": total,
            "tables": "\n".join(tables),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
