"""The two storage layouts ``bench_loader.py`` compares, and the dataset pair over them.

Inputs: the real shards copied to the benchmark's cache, or synthetic shards written with
``pipeline.shards.ShardWriter``. The COMBO/AVSBench per-file layout (PNG frames, PNG maskiges, GT PNGs,
one audio pickle per video, an index CSV) built from those shards, and ``ComboLayoutDataset`` reading it
the COMBO way. ``make_datasets`` gives the ``ClipDataset`` / ``ComboLayoutDataset`` pair over the same
clips and ``check_identical`` that both give the same items (the method is in bench_loader's docstring).
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _bench_common import moving_frames
from torch.utils.data import Dataset

from pipeline.shards import ShardReader, ShardWriter, shard_file
from pipeline.shards.identity import SOURCE_DIGEST
from train.data import (
    Augmentation,
    ClipDataset,
    ClipSource,
    augmentation_generator,
    clip_item,
    image_tensor,
    label_tensor,
)

KINDS = ("extract", "audio", "proposals")
SPLITS = ("train", "val", "test")
COMPARED_KEYS = ("frames", "maskiges", "masks", "labelled", "audio", "jitter")


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
            made_from = ext.write_video(
                vid, {"frames": frames, "gt_masks": gt, "gt_valid": valid}, attrs={"split": split, "num_seconds": t}
            )  # the derived shards name it, as the stages do: the training reader checks the pairing
            aud.write_video(
                vid,
                {"embeddings": rng.standard_normal((t, dim)).astype(np.float32)},
                attrs={"num_seconds": t, SOURCE_DIGEST: made_from},
            )
            pro.write_video(
                vid, {"maskige": synthetic_maskige(rng, t, size)}, attrs={"num_frames": t, SOURCE_DIGEST: made_from}
            )
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


# -- the pair compared -----------------------------------------------------------------------------


def make_datasets(
    hdf5_root: Path, combo_root: Path, datasets: list[str], shards: list[int], size: int, augment: bool
) -> dict[str, Dataset]:
    aug = Augmentation((size, size)) if augment else None
    ours = ClipDataset(datasets, shards, SPLITS, ClipSource(data_root=str(hdf5_root), size=(size, size)), aug)
    combo = ComboLayoutDataset(combo_root, [c.video_id for c in ours.clips], (size, size), aug)
    return {"hdf5": ours, "combo": combo}


def check_identical(sets: dict[str, Dataset], count: int) -> bool:
    for index in range(min(count, len(sets["hdf5"]))):
        a, b = sets["hdf5"][index], sets["combo"][index]
        for key in COMPARED_KEYS:
            if (key in a) != (key in b) or (key in a and not torch.equal(a[key], b[key])):
                raise AssertionError(f"clip {index} ({a['video_id']}): {key} differs between the layouts")
    return True
