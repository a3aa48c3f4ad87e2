"""Extraction throughput (videos/s) of ``pipeline.extraction.extract_shard`` with dask: in-process, 1 and 2 workers.

Method
------
24 short synthetic videos (3 s, 320x180, 25 fps, moving shapes, 44.1 kHz stereo AAC; made once with
``media.encode_video`` and cached under benchmarks/results/cache/) are listed and probed with
``manifest.build_manifest`` (a ``folder`` source, T = 3), then the same rows are extracted to a
temporary shard with ``extract_shard(rows, out, ExtractParams(), DaskParams(n_workers=k))`` for
k = 0 (in-process, no cluster), 1 and 2 (a fresh ``LocalCluster`` of single-threaded worker
processes per call, exactly what one ``avs extract`` run does). The modes are interleaved (order
rotated each repeat) because the 2-core machine is shared; medians are reported.

Wall time per call includes the cluster start and stop, which is what a DVC stage item pays. A
second, instrumented session per mode and repeat separates the parts: start (``dask_client``
entered), warm throughput (``map_ordered(extract_video)`` over the same rows on the running
cluster, results discarded, no shard writing) and stop. Every mode's shard must hold the same
arrays (checked).

    python benchmarks/bench_dask_workers.py           # 24 videos, 3 repeats
    python benchmarks/bench_dask_workers.py --quick   # 6 videos, 1 repeat
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import functools  # noqa: E402

from _bench_common import RESULTS_DIR, machine_info, median, moving_frames, print_table, tone, write_json  # noqa: E402

from pipeline import media  # noqa: E402
from pipeline.extraction import ExtractParams, extract_shard, extract_video  # noqa: E402
from pipeline.manifest import SourceParams, build_manifest  # noqa: E402
from pipeline.parallel import dask_client, map_ordered  # noqa: E402
from pipeline.params import DaskParams  # noqa: E402
from pipeline.shards import ShardReader  # noqa: E402

CACHE = RESULTS_DIR / "cache" / "bench_dask_workers"
SECONDS = 3
MODES = {"in-process": 0, "1 worker": 1, "2 workers": 2}


def make_videos(count: int) -> Path:
    folder = CACHE / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"v{i:03d}.mp4"
        if not path.is_file():
            media.encode_video(
                path,
                moving_frames(SECONDS * 25, 180, 320, seed=100 + i),
                25,
                tone(SECONDS, rate=44_100, freq=200 + 20 * i, channels=2),
                audio_rate=44_100,
            )
    return folder


def shard_arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with ShardReader(path) as r:
        return {vid: {k: r.read(vid, k) for k in r.keys(vid)} for vid in r.video_ids()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_dask_workers.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 videos, 1 repeat")
    parser.add_argument("--videos", type=int, help="number of videos (default 24, quick 6)")
    parser.add_argument("--repeats", type=int, help="repeats per mode (default 3, quick 1)")
    args = parser.parse_args(argv)
    count = args.videos or (6 if args.quick else 24)
    repeats = args.repeats or (1 if args.quick else 3)

    folder = make_videos(count)
    with tempfile.TemporaryDirectory(prefix="avs-bench-dask-") as tmp_name:
        tmp = Path(tmp_name)
        # Only the first `count` videos: a folder source lists everything, so link them into a fresh folder.
        subset = tmp / "videos"
        subset.mkdir()
        for i in range(count):
            (subset / f"v{i:03d}.mp4").hardlink_to(folder / f"v{i:03d}.mp4")
        rows = build_manifest(
            SourceParams(source="folder", root=str(subset), seconds=SECONDS), num_shards=1, progress=False
        )
        cfg = ExtractParams()
        wall = {m: [] for m in MODES}
        startup = {m: [] for m in MODES}
        stop = {m: [] for m in MODES}
        warm = {m: [] for m in MODES}
        work = functools.partial(extract_video, cfg=cfg)
        outputs: dict[str, Path] = {}
        order = list(MODES)
        for rep in range(repeats):
            rotated = order[rep % len(order) :] + order[: rep % len(order)]
            for mode in rotated:
                dask_cfg = DaskParams(n_workers=MODES[mode])
                start = time.perf_counter()
                with dask_client(dask_cfg) as client:
                    started = time.perf_counter()
                    outcomes = [o for _, o in map_ordered(work, rows, dask_cfg=dask_cfg, progress=False, client=client)]
                    done = time.perf_counter()
                stopped = time.perf_counter()
                if not all(o.ok for o in outcomes):
                    raise RuntimeError(f"{mode}: warm run failed: {[o.error for o in outcomes if not o.ok][:3]}")
                startup[mode].append(started - start)
                warm[mode].append(done - started)
                stop[mode].append(stopped - done)
                out = tmp / f"{mode.replace(' ', '_')}.h5"
                start = time.perf_counter()
                failures = extract_shard(rows, out, cfg, dask_cfg, dataset="bench", progress=False)
                wall[mode].append(time.perf_counter() - start)
                if failures.errors:
                    raise RuntimeError(f"{mode}: {len(failures.errors)} videos failed: {failures.rows[:3]}")
                outputs[mode] = out
            print(f"repeat {rep + 1}/{repeats} done", flush=True)
        reference = shard_arrays(outputs["in-process"])
        same = {
            m: all(
                np.array_equal(a, reference[v][k]) for v, arrays in shard_arrays(p).items() for k, a in arrays.items()
            )
            and len(shard_arrays(p)) == len(reference)
            for m, p in outputs.items()
        }

    rows_out, results = [], {}
    base = count / median(wall["in-process"])
    for mode in MODES:
        w, s, e, h = median(wall[mode]), median(startup[mode]), median(stop[mode]), median(warm[mode])
        results[mode] = {
            "n_workers": MODES[mode],
            "wall_s": wall[mode],
            "cluster_start_s": startup[mode],
            "cluster_stop_s": stop[mode],
            "warm_map_s": warm[mode],
            "median_wall_s": w,
            "videos_per_s": count / w,
            "warm_videos_per_s": count / h,
            "same_arrays_as_in_process": same[mode],
        }
        rows_out.append(
            [mode, w, count / w, f"{(count / w) / base:.2f}x", s, e, h, count / h, "yes" if same[mode] else "NO"]
        )
    table = print_table(
        ["mode", "wall s", "videos/s", "vs in-proc", "start s", "stop s", "warm map s", "warm videos/s", "same arrays"],
        rows_out,
        title=f"extract_shard over {count} videos ({SECONDS} s, 320x180 -> 224x224), "
        f"median of {repeats} interleaved runs; machine has {machine_info()['cpu_count']} cores",
    )
    write_json(
        args.out,
        {
            "benchmark": "bench_dask_workers",
            "quick": args.quick,
            "videos": count,
            "seconds_per_video": SECONDS,
            "repeats": repeats,
            "machine": machine_info(),
            "modes": results,
            "table": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
