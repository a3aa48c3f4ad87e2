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
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import REPO_ROOT, RESULTS_DIR, machine_info, median, print_table, write_json  # noqa: E402
from _loader_layouts import (  # noqa: E402
    build_combo_layout,
    check_identical,
    complete_shards,
    copy_shards,
    make_datasets,
    write_synthetic_shards,
)
from _loader_measure import (  # noqa: E402
    BATCH,
    CPU,
    batch_plan,
    evict,
    layout_files,
    model_step_rate,
    resident_fraction,
    storage,
    time_loader,
    time_reads,
)

from train.data import collate_clips, prepare_batch  # noqa: E402

CACHE = RESULTS_DIR / "cache" / "bench_loader"
MODES = ("loader", "prepare")  # (a) the DataLoader alone; (b) DataLoader + prepare_batch on the CPU
MODE_TITLES = {
    "loader": "(a) DataLoader alone (uint8 batches: the loader comparison)",
    "prepare": "(b) DataLoader + prepare_batch(cpu) (what CPU training pays)",
}
LOADER_ONLY_WHY = (
    "the issue's loader comparison: what the DataLoader delivers; on GPU training prepare_batch "
    "runs on the GPU, and on the CPU it is the same work for both layouts"
)


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
