"""Maskige storage: our HDF5 shard (gzip, one chunk per frame) against one PNG per frame (COMBO).

Maskiges are made from real proposal-like masks: nested and overlapping blobs encoded with
pipeline.proposals.maskige (the palette colours and flat regions are what matter for the
size). Measures bytes per frame and the time of random single-frame reads (cold file handle
per read, as a data loader worker opening shards on demand would see, and warm handle).
Prints a table and writes benchmarks/results/bench_maskige_store.json.

    python benchmarks/bench_maskige_store.py [--videos 40 --frames 5 --reads 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import write_json  # noqa: E402

from pipeline.proposals.maskige import encode_maskige, label_map  # noqa: E402
from pipeline.proposals.palette import ade20k_palette  # noqa: E402
from pipeline.shards import ShardReader, ShardWriter  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "bench_maskige_store.json"


def blob_masks(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """``count`` bool masks [count,size,size]: ellipses and rectangles of varied scale (parts and wholes)."""
    yy, xx = np.mgrid[0:size, 0:size]
    masks = np.zeros((count, size, size), bool)
    for k in range(count):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(4, size / 2.5, 2)
        if rng.random() < 0.6:
            masks[k] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            masks[k] = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    return masks


def make_maskiges(videos: int, frames: int, size: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(maskiges uint8 [T,H,W,3], label maps uint8 [T,H,W]) per video."""
    rng = np.random.default_rng(seed)
    maskiges, labels = [], []
    for _ in range(videos):
        masks = [blob_masks(rng, size, int(rng.integers(5, 40))) for _ in range(frames)]
        maskiges.append(np.stack([encode_maskige(m)[0] for m in masks]))
        labels.append(np.stack([label_map(m)[0].astype(np.uint8) for m in masks]))
    return maskiges, labels


def write_png_layout(root: Path, maskiges: list[np.ndarray]) -> int:
    from PIL import Image

    total = 0
    for v, clip in enumerate(maskiges):
        folder = root / f"video{v:04d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(clip):
            path = folder / f"{t}.png"
            Image.fromarray(frame).save(path)
            total += path.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reads", type=int, default=400)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    from PIL import Image

    maskiges, labels = make_maskiges(args.videos, args.frames, args.size)
    palette = ade20k_palette()
    n_frames = args.videos * args.frames
    rng = np.random.default_rng(1)
    picks = [(int(rng.integers(args.videos)), int(rng.integers(args.frames))) for _ in range(args.reads)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shard = tmp / "proposals" / "shard-000.h5"
        start = time.perf_counter()
        with ShardWriter(shard, kind="proposals", params_hash="0" * 16) as writer:
            for v, clip in enumerate(maskiges):
                writer.write_video(f"video{v:04d}", {"maskige": clip})
        h5_write = time.perf_counter() - start
        # Alternative layout (not what the stage writes): the label map, coloured on read.
        label_shard = tmp / "labels" / "shard-000.h5"
        with ShardWriter(label_shard, kind="proposals", params_hash="0" * 16) as writer:
            for v, clip in enumerate(labels):
                writer.write_video(f"video{v:04d}", {"labels": clip})
        start = time.perf_counter()
        png_bytes = write_png_layout(tmp / "png", maskiges)
        png_write = time.perf_counter() - start

        # correctness: both stores give back the same arrays
        with ShardReader(shard) as reader:
            assert np.array_equal(
                reader.read(f"video{args.videos - 1:04d}", "maskige", args.frames - 1), maskiges[-1][-1]
            )
        last_png = tmp / "png" / f"video{args.videos - 1:04d}" / f"{args.frames - 1}.png"
        assert np.array_equal(np.asarray(Image.open(last_png)), maskiges[-1][-1])

        start = time.perf_counter()
        for v, t in picks:
            with ShardReader(shard) as reader:
                reader.read(f"video{v:04d}", "maskige", t)
        h5_cold = (time.perf_counter() - start) / len(picks)
        start = time.perf_counter()
        with ShardReader(shard) as reader:
            for v, t in picks:
                reader.read(f"video{v:04d}", "maskige", t)
        h5_warm = (time.perf_counter() - start) / len(picks)
        start = time.perf_counter()
        with ShardReader(label_shard) as reader:
            for v, t in picks:
                palette[reader.read(f"video{v:04d}", "labels", t)]
        labels_warm = (time.perf_counter() - start) / len(picks)
        with ShardReader(label_shard) as reader:
            assert np.array_equal(
                palette[reader.read(f"video{args.videos - 1:04d}", "labels", args.frames - 1)], maskiges[-1][-1]
            )
        start = time.perf_counter()
        for v, t in picks:
            np.asarray(Image.open(tmp / "png" / f"video{v:04d}" / f"{t}.png").convert("RGB"))
        png_read = (time.perf_counter() - start) / len(picks)
        results = {
            "hdf5_gzip_per_frame_chunks": {
                "bytes_per_frame": shard.stat().st_size / n_frames,
                "files": 1,
                "read_ms_cold_handle": h5_cold * 1e3,
                "read_ms_warm_handle": h5_warm * 1e3,
                "write_s": h5_write,
            },
            "hdf5_label_map_coloured_on_read": {
                "bytes_per_frame": label_shard.stat().st_size / n_frames,
                "files": 1,
                "read_ms_cold_handle": None,
                "read_ms_warm_handle": labels_warm * 1e3,
                "write_s": None,
            },
            "png_per_frame": {
                "bytes_per_frame": png_bytes / n_frames,
                "files": n_frames,
                "read_ms_cold_handle": png_read * 1e3,
                "read_ms_warm_handle": png_read * 1e3,
                "write_s": png_write,
            },
        }
    raw = args.size * args.size * 3
    print(f"{n_frames} maskige frames of {args.size}x{args.size} (raw {raw} bytes each), {len(picks)} random reads")
    print(
        f"{'store':<32} {'bytes/frame':>12} {'vs raw':>7} {'files':>6} {'read ms (new handle)':>21} "
        f"{'read ms (open)':>15} {'write s':>8}"
    )
    for name, r in results.items():

        def fmt(value, width):
            return f"{value:>{width}.2f}" if value is not None else f"{'-':>{width}}"

        print(
            f"{name:<32} {r['bytes_per_frame']:>12.0f} {r['bytes_per_frame'] / raw:>7.3f} {r['files']:>6} "
            f"{fmt(r['read_ms_cold_handle'], 21)} {fmt(r['read_ms_warm_handle'], 15)} {fmt(r['write_s'], 8)}"
        )
    report = {
        "videos": args.videos,
        "frames_per_video": args.frames,
        "size": args.size,
        "reads": len(picks),
        "raw_bytes_per_frame": raw,
        "load_average": os.getloadavg(),
        "results": results,
    }
    write_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
