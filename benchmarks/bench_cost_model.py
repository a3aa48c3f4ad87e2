"""The per-stage cost model: seconds per video of each feature stage on 1 and 2 dask workers, projected.

Method
------
Inputs are real-layout AVSBench S4 videos (5 PNG frames + a 5 s wav each) written by
``benchmarks/avsbench_full.py`` (cached under benchmarks/results/cache/bench_cost_model/) and listed with
the project's manifest builder (``avsbench_s4`` source). Each stage is timed through its own shard
function, exactly as ``avs <stage>`` calls it:

* ``extract``: ``pipeline.extraction.extract_shard``;
* ``audio``: ``pipeline.audio.shard.compute_audio_shard`` with YAMNet (the default encoder, offline);
* ``proposals``: COMBO's maskiges (``ComboMaskigeTree.write_shard`` over the generated ``pre_SAM_mask``
  tree: it reads PNGs in the stage's own process, dask is not used), MobileSAM presets
  (``propose_shard``) and Semantic-SAM on the CPU (``propose_shard``, backend ``semantic_sam``, with a
  SwinL checkpoint of seeded random weights written here: no official checkpoint is available offline;
  random weights have the official model's FLOPs in the backbone, encoder and decoder, but fewer masks
  survive the filters, so post-processing is cheaper than with the real weights).

Modes: in-process (``dask.n_workers: 0``, the reference) and a real dask cluster of 1 and 2 workers:
a ``dask scheduler`` process and a ``dask worker --nworkers W --nthreads 1`` process tree on loopback,
reached through ``dask.scheduler_address`` as on a cluster. A fresh cluster per stage and mode, so each
stage item's fixed cost is measured on its own:

* ``cluster_start_s`` / ``cluster_stop_s``: scheduler + workers up (all W registered) / shut down;
* ``warm_up_s``: each worker imports the stage and loads its model (``client.run``), once per process;
* ``stage_fixed_s``: the stage function over zero videos (writer, checkpoint checks, encoder in the
  main process);
* ``per_video_s`` = (stage function over the videos on the warm cluster - ``stage_fixed_s``) / videos.

Slow backends (MobileSAM ``fast`` / ``reference``, Semantic-SAM) run on ``--slow-videos`` one-frame
videos (the first frame of each S4 video) and report seconds per frame x 5 as their per-video cost;
``reference`` runs on 1 worker only and takes its parallel efficiency from ``fast`` (same model and
code, different prompt count). Scaling: speedup(2) = per_video(1) / per_video(2), efficiency e =
speedup / 2. The projection per dataset (video and frame counts from avsbench_full.py) is, per stage,

    wall(W) = items x start_cost + frames x per_frame(1) / (W x e)

for W = 2 (this machine) and W = 32, where items = ceil(videos / --videos-per-shard) and start_cost is
the 2-worker item's fixed cost. The assumptions are written into the JSON. A GPU column for Semantic-SAM
is filled from benchmarks/results/gpu_check.json when benchmarks/gpu_check.py has run on a GPU.

    python benchmarks/bench_cost_model.py            # ~10 min on 2 idle cores
    python benchmarks/bench_cost_model.py --quick    # 3 videos, MobileSAM demo, tiny Semantic-SAM
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import avsbench_full  # noqa: E402
from _bench_common import RESULTS_DIR, machine_info, print_table, write_json  # noqa: E402
from _cost_cases import PRESETS, S4_FRAMES, Case, build_cases  # noqa: E402
from _cost_cluster import start_cluster, stop_cluster  # noqa: E402

from pipeline.params import DaskParams  # noqa: E402

GPU_CHECK = RESULTS_DIR / "gpu_check.json"
PROJECTED_WORKERS = (2, 32)
ASSUMPTIONS = [
    "Per-video costs are measured on S4-layout videos (224x224 PNG frames, 5 s wav) and projected per frame "
    "(= per second of audio): AVSS's 320x240 JPEG frames and 10-frame v2 videos are counted by their frames.",
    "The parallel efficiency e measured from 1 to 2 workers is carried to 32 workers: optimistic, most for "
    "I/O-bound stages (extract, audio), whose shard is written by one process per stage item.",
    "start_cost (per stage item) is the 2-worker item's cluster start + stop + worker warm-up + the stage's own "
    "fixed cost, also used for 32 workers; a long-lived cluster (dask.scheduler_address) pays start/stop once.",
    "items = ceil(videos / videos_per_shard); DVC runs a stage's items one after another.",
    "COMBO's maskige tree is read in the stage's own process (no dask): its wall does not shrink with W.",
    "MobileSAM 'reference' is timed on 1 worker only; its efficiency is the 'fast' preset's (same model, code).",
    "Semantic-SAM on the CPU: SwinL architecture with seeded random weights (no official checkpoint offline): "
    "same FLOPs in backbone, encoder and decoder; fewer masks pass the filters than with real weights, so "
    "post-processing is under-counted.",
    "Synthetic frames: MobileSAM's prompt count (and so its cost) depends on the image; real frames may differ.",
    "The GPU column is one GPU, Semantic-SAM fp32 seconds per frame from gpu_check.json (a 360x640 frame, "
    "larger than S4's 224x224), frames x s/frame only (no start cost).",
]


# ---------------------------------------------------------------- dataset sizes
def dataset_sizes(seed: int = 0) -> dict[str, dict[str, int]]:
    """Videos and frames of the full S4, MS3 and AVSS releases, from avsbench_full's plan (the one source)."""
    plan = avsbench_full.plan(1.0, seed)
    return {name: {"videos": len(videos), "frames": sum(v.frames for v in videos)} for name, videos in plan.items()}


# ---------------------------------------------------------------- measuring
def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_mode(case: Case, mode: int, work: Path) -> dict[str, Any]:
    """One stage on one mode: fixed costs and the warm per-video cost (seconds)."""
    folder = work / "runs" / f"{case.name.replace(':', '-')}-{mode}"
    folder.mkdir(parents=True, exist_ok=True)
    cluster = start_cluster(mode, folder / "cluster") if mode else None
    cfg = DaskParams(scheduler_address=cluster.address) if cluster else DaskParams(n_workers=0)
    try:
        if cluster:
            warm_up = _seconds(lambda: cluster.client.run(functools.partial(case.warm_up, True)))
        else:
            warm_up = _seconds(lambda: case.warm_up(False))
        # The better of two empty runs: the first may still import what the stage imports lazily.
        fixed = min(_seconds(functools.partial(case.run, True, cfg, folder / f"empty-{k}.h5")) for k in range(2))
        wall = _seconds(lambda: case.run(False, cfg, folder / "out.h5"))
    finally:
        stop = stop_cluster(cluster) if cluster else 0.0
    per_video = max(wall - fixed, 0.0) / case.videos
    return {
        "cluster_start_s": round(cluster.start_s, 3) if cluster else 0.0,
        "cluster_stop_s": round(stop, 3),
        "warm_up_s": round(warm_up, 3),
        "stage_fixed_s": round(fixed, 3),
        "wall_s": round(wall, 3),
        "per_video_s": round(per_video, 4),
        "per_frame_s": round(per_video / case.frames_per_video, 4),
    }


def item_start_cost(mode: dict[str, float]) -> float:
    return mode["cluster_start_s"] + mode["cluster_stop_s"] + mode["warm_up_s"] + mode["stage_fixed_s"]


def summarise(case: Case, modes: dict[str, dict], measured: dict[str, dict]) -> dict[str, Any]:
    """The case's record: its modes, speedup(2), efficiency e (measured, borrowed or serial) and start cost."""
    speedup = None
    if "1" in modes and "2" in modes and modes["2"]["per_frame_s"] > 0:
        speedup = modes["1"]["per_frame_s"] / modes["2"]["per_frame_s"]
    if case.serial:
        efficiency, source = None, "serial: the stage does not use dask"
    elif speedup is not None:
        efficiency, source = speedup / 2, "measured 1 -> 2 workers"
    elif case.efficiency_from and measured.get(case.efficiency_from, {}).get("efficiency") is not None:
        efficiency, source = measured[case.efficiency_from]["efficiency"], f"borrowed from {case.efficiency_from}"
    else:
        efficiency, source = None, "not measured"
    start_mode = modes.get("2") or modes.get("1") or modes["0"]
    return {
        "label": case.label,
        "note": case.note,
        "videos": case.videos,
        "frames_per_video": case.frames_per_video,
        **case.extra,
        "modes": modes,
        "speedup_2": None if speedup is None else round(speedup, 3),
        "efficiency": None if efficiency is None else round(efficiency, 3),
        "efficiency_source": source,
        "serial": case.serial,
        "start_cost_s": round(item_start_cost(start_mode), 3),
        "per_frame_1_s": (modes.get("1") or modes["0"])["per_frame_s"],
    }


# ---------------------------------------------------------------- projection (pure arithmetic)
def projected_wall(case: dict[str, Any], items: int, frames: int, workers: int) -> float | None:
    """wall = items x start_cost + frames x per_frame(1) / (W x e); a serial stage ignores W; None without e."""
    fixed = items * case["start_cost_s"]
    if case["serial"]:
        return fixed + frames * case["per_frame_1_s"]
    if not case.get("efficiency"):
        return None
    return fixed + frames * case["per_frame_1_s"] / (workers * case["efficiency"])


def gpu_seconds_per_frame(path: Path = GPU_CHECK) -> float | None:
    """Semantic-SAM SwinL fp32 seconds per frame measured on a GPU by gpu_check.py; None if not there."""
    try:
        report = json.loads(path.read_text())
        return float(report["semantic_sam"]["swinl_random"]["fp32"]["s_per_frame"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def project(
    cases: dict[str, dict[str, Any]],
    sizes: dict[str, dict[str, int]],
    videos_per_shard: int,
    workers: tuple[int, ...] = PROJECTED_WORKERS,
    gpu_s_per_frame: float | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per dataset and case: items, frames and the projected wall seconds for each W (and one GPU)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset, size in sizes.items():
        items = max(1, math.ceil(size["videos"] / videos_per_shard))
        result[dataset] = {}
        for name, case in cases.items():
            walls = {f"W{w}_s": projected_wall(case, items, size["frames"], w) for w in workers}
            gpu = size["frames"] * gpu_s_per_frame if gpu_s_per_frame and name == "proposals:semantic_sam" else None
            result[dataset][name] = {
                "items": items,
                "videos": size["videos"],
                "frames": size["frames"],
                **{k: None if v is None else round(v, 1) for k, v in walls.items()},
                "gpu_1_s": None if gpu is None else round(gpu, 1),
            }
    return result


# ---------------------------------------------------------------- output
def _hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600:.2f}"


def print_tables(cases: dict[str, dict], projection: dict[str, dict]) -> str:
    rows = []
    for name, case in cases.items():
        for mode, m in case["modes"].items():
            rows.append([name, f"{case['videos']}x{case['frames_per_video']}", mode, m["cluster_start_s"],
                         m["cluster_stop_s"], m["warm_up_s"], m["stage_fixed_s"], m["wall_s"],
                         m["per_frame_s"] * S4_FRAMES, case["speedup_2"] or "", case["efficiency"] or ""])  # fmt: skip
    text = print_table(
        ["case", "videos x frames", "workers", "start s", "stop s", "warm-up s", "stage fixed s", "wall s",
         "s / 5-frame video", "speedup(2)", "e"], rows,
        title="Measured: per stage and mode (workers 0 = in-process); s / 5-frame video is warm, fixed costs apart",
    )  # fmt: skip
    proj_rows = [
        [dataset, name, p["items"], p["frames"], _hours(p["W2_s"]), _hours(p["W32_s"]), _hours(p["gpu_1_s"])]
        for dataset, by_case in projection.items()
        for name, p in by_case.items()
    ]
    text += "\n" + print_table(
        ["dataset", "case", "items", "frames", "W=2 h", "W=32 h", "1 GPU h"], proj_rows,
        title="Projected wall hours (assumptions in the JSON)",
    )  # fmt: skip
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "cost_model.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 videos, MobileSAM demo, tiny Semantic-SAM")
    parser.add_argument("--videos", type=int, help="S4 videos for extract / audio / COMBO maskiges (default 24)")
    parser.add_argument("--demo-videos", type=int, help="videos for the MobileSAM demo preset (default 8)")
    parser.add_argument("--slow-videos", type=int, default=2, help="one-frame videos for the slow backends")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, help="MobileSAM presets (default demo fast reference)")
    parser.add_argument("--no-semantic-sam", dest="semantic_sam", action="store_false", help="skip Semantic-SAM")
    parser.add_argument("--videos-per-shard", type=int, default=300, help="projection: videos per stage item")
    args = parser.parse_args(argv)
    args.videos = args.videos or (3 if args.quick else 24)
    args.demo_videos = args.demo_videos or (2 if args.quick else 8)
    args.presets = args.presets or (["demo"] if args.quick else ["demo", "fast", "reference"])
    for key in ("videos", "demo_videos", "slow_videos", "videos_per_shard"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    args.demo_videos, args.slow_videos = min(args.demo_videos, args.videos), min(args.slow_videos, args.videos)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    sizes = dataset_sizes()
    payload: dict[str, Any] = {"benchmark": "bench_cost_model", "quick": args.quick, "machine": machine_info(),
                               "dataset_sizes": sizes, "videos_per_shard": args.videos_per_shard,
                               "assumptions": ASSUMPTIONS, "complete": False, "cases": {}}  # fmt: skip
    gpu = gpu_seconds_per_frame()
    payload["gpu_semantic_sam_s_per_frame"] = gpu
    with tempfile.TemporaryDirectory(prefix="avs-bench-cost-") as tmp:
        work = Path(tmp)
        cases = build_cases(args, work)
        print(f"inputs ready in {time.perf_counter() - started:.0f} s: {[c.name for c in cases]}", flush=True)
        for case in cases:
            modes = {}
            for mode in case.modes:
                modes[str(mode)] = measure_mode(case, mode, work)
                print(f"  {case.name} workers={mode}: {modes[str(mode)]}", flush=True)
            payload["cases"][case.name] = summarise(case, modes, payload["cases"])
            payload["projection"] = project(payload["cases"], sizes, args.videos_per_shard, gpu_s_per_frame=gpu)
            write_json(args.out, payload)  # a run stopped half-way keeps the cases it finished, projected
    payload["table"] = print_tables(payload["cases"], payload["projection"])
    payload["complete"], payload["total_s"] = True, round(time.perf_counter() - started, 1)
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
