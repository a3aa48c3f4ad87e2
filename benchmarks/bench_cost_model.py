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
import contextlib
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import avsbench_full  # noqa: E402
from _bench_common import REPO_ROOT, RESULTS_DIR, machine_info, print_table, write_json  # noqa: E402

from pipeline.params import DaskParams  # noqa: E402

CACHE = RESULTS_DIR / "cache" / "bench_cost_model"
GPU_CHECK = RESULTS_DIR / "gpu_check.json"
S4_FRAMES = 5  # frames (= seconds) of every measured S4 video
PROJECTED_WORKERS = (2, 32)
PRESETS = ("demo", "fast", "reference", "quality")
ONE_WORKER_PRESETS = ("reference", "quality")  # slow: 1 worker only, efficiency borrowed from `fast`
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


# ---------------------------------------------------------------- dataset sizes and inputs
def dataset_sizes(seed: int = 0) -> dict[str, dict[str, int]]:
    """Videos and frames of the full S4, MS3 and AVSS releases, from avsbench_full's plan (the one source)."""
    plan = avsbench_full.plan(1.0, seed)
    return {name: {"videos": len(videos), "frames": sum(v.frames for v in videos)} for name, videos in plan.items()}


def s4_rows(count: int) -> tuple[list, Path]:
    """Manifest rows of ``count`` generated S4 videos (the tree is cached) and the S4 release folder."""
    from pipeline.manifest import SourceParams, build_manifest

    fraction = max(0.005, 1.05 * count / sum(avsbench_full.COUNTS["s4"]))
    raw = CACHE / f"raw-{fraction:.5f}"
    avsbench_full.generate(raw, ["s4"], fraction, seed=0, workers=1)
    root = raw / "Single-source"
    rows = build_manifest(SourceParams(source="avsbench_s4", root=str(root)), num_shards=1, progress=False)
    if len(rows) < count:
        raise SystemExit(f"{root}: {len(rows)} videos listed, {count} asked for")
    return sorted(rows, key=lambda r: r.video_id)[:count], root


def first_frames_shard(source: Path, out: Path, count: int) -> Path:
    """An extraction shard of one-frame videos (frame 0 of the first ``count`` videos of ``source``)."""
    from pipeline.shards import ShardReader, ShardWriter

    with ShardReader(source) as reader, ShardWriter(out, kind="extract", params_hash="first-frames") as writer:
        for video_id in reader.video_ids()[:count]:
            frames = reader.read(video_id, "frames", index=slice(0, 1))
            writer.write_video(video_id, {"frames": frames}, {"num_seconds": 1, "split": "test", "task": "s4"})
    return out


def random_semantic_sam_checkpoint(out: Path, tiny: bool) -> Path:
    """A Semantic-SAM checkpoint with seeded random weights under the official key names (SwinL, or the
    reduced TINY config for the quick run)."""
    import torch

    from pipeline.proposals.semantic_sam import SWINL, TINY, SemanticSam

    torch.manual_seed(0)
    torch.save(SemanticSam(TINY if tiny else SWINL).state_dict(), out)
    return out


# ---------------------------------------------------------------- a real dask cluster
@dataclass
class Cluster:
    """A ``dask scheduler`` process and a ``dask worker`` process tree on loopback, with a client."""

    address: str
    processes: list[subprocess.Popen]
    client: Any
    start_s: float
    log: Path


def start_cluster(workers: int, folder: Path, timeout: float = 180.0) -> Cluster:
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file, log = folder / "scheduler.json", folder / "cluster.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    cli = [sys.executable, "-m"]
    start = time.perf_counter()
    with log.open("ab") as sink:
        procs = [
            subprocess.Popen(
                [
                    *cli,
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=sink,
            ),  # fmt: skip
        ]
        while not scheduler_file.is_file():
            if procs[0].poll() is not None or time.perf_counter() - start > timeout:
                _end(procs)
                raise RuntimeError(f"dask scheduler did not start; see {log}: {_tail(log)}")
            time.sleep(0.05)
        procs.append(
            subprocess.Popen(
                [
                    *cli,
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(scheduler_file),
                    "--nworkers",
                    str(workers),
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--death-timeout",
                    "60",
                    "--local-directory",
                    str(folder / "workers"),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=sink,
            )  # fmt: skip
        )
    try:
        client = Client(scheduler_file=str(scheduler_file), timeout="60s")
        client.wait_for_workers(workers, timeout=timeout)
    except Exception as error:
        _end(procs)
        raise RuntimeError(f"dask cluster of {workers} workers did not start ({error}); {_tail(log)}") from error
    return Cluster(client.scheduler.address, procs, client, time.perf_counter() - start, log)


def stop_cluster(cluster: Cluster) -> float:
    """Shut the scheduler and workers down; seconds until every process has exited."""
    start = time.perf_counter()
    with contextlib.suppress(Exception):
        cluster.client.shutdown()
    with contextlib.suppress(Exception):
        cluster.client.close()
    _end(cluster.processes)
    return time.perf_counter() - start


def _end(procs: list[subprocess.Popen], grace: float = 30.0) -> None:
    """Wait for this benchmark's own cluster processes; terminate (then kill) any still running."""
    deadline = time.perf_counter() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""


# ---------------------------------------------------------------- the stages as cases
@dataclass
class Case:
    """One stage (or proposal backend) to time: ``run(empty, dask_cfg, out)`` calls its shard function over
    zero videos or over the case's videos; ``warm_up(on_worker)`` imports it and loads its model."""

    name: str
    label: str
    videos: int
    frames_per_video: int
    modes: tuple[int, ...]
    run: Callable[[bool, DaskParams, Path], Any]
    warm_up: Callable[[bool], None]
    note: str = ""
    efficiency_from: str | None = None  # another case whose measured efficiency this one takes
    serial: bool = False  # the stage does not use dask
    extra: dict[str, Any] = field(default_factory=dict)


def _checked(failures: Any, name: str) -> None:
    errors = failures.errors
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} videos failed, e.g. {errors[0].video_id}: {errors[0].reason}")


def _extract_run(rows: list, empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.extraction import ExtractParams, extract_shard

    failures = extract_shard([] if empty else rows, out, ExtractParams(), cfg, "s4", progress=False, reuse=False)
    _checked(failures, "extract")


def _extract_warm_up(on_worker: bool) -> None:
    import pipeline.extraction  # noqa: F401 - the import is the warm-up (no model)


def _audio_run(shards: tuple[Path, Path], empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.audio.features import AudioParams
    from pipeline.audio.shard import compute_audio_shard

    source = shards[0] if empty else shards[1]
    _checked(compute_audio_shard(source, out, AudioParams(), cfg, progress=False, reuse=False), "audio")


def _audio_warm_up(on_worker: bool) -> None:
    from pipeline.audio.features import AudioParams, get_encoder

    get_encoder(AudioParams(), 1 if on_worker else None)  # what EncodeChunk builds (threads_per_worker: 1)


def _combo_run(tree: Path, manifest: Path, shards: tuple[Path, Path], empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.proposals.precomputed import ComboMaskigeTree

    source = shards[0] if empty else shards[1]
    failures, _ = ComboMaskigeTree(str(tree)).write_shard(source, out, dataset="s4", manifest=manifest, progress=False)
    _checked(failures, "combo maskiges")


def _combo_warm_up(on_worker: bool) -> None:
    import pipeline.proposals.precomputed  # noqa: F401


def _propose_run(params: Any, shards: tuple[Path, Path], empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.proposals.shard import propose_shard

    source = shards[0] if empty else shards[1]
    failures, _ = propose_shard(source, out, params, cfg, dataset="s4", progress=False, reuse=False)
    _checked(failures, f"proposals {params.backend}")


def _propose_warm_up(params: Any, on_worker: bool) -> None:
    import torch

    from pipeline.proposals.backends import cached_backend

    torch.set_num_threads(params.threads_per_worker)
    cached_backend(params)


def build_cases(args: argparse.Namespace, work: Path) -> list[Case]:
    """The cases of this run, their inputs prepared under ``work`` (extraction shards made in-process)."""
    from pipeline.extraction import ExtractParams, extract_shard
    from pipeline.manifest import write_manifest

    rows, root = s4_rows(args.videos)
    manifest = work / "manifest.csv"
    write_manifest(rows, manifest)
    shard = work / "inputs" / "extract-all.h5"
    empty = work / "inputs" / "extract-none.h5"
    demo_shard = work / "inputs" / "extract-demo.h5"
    for path, subset in ((shard, rows), (empty, []), (demo_shard, rows[: args.demo_videos])):
        _checked(extract_shard(subset, path, ExtractParams(), DaskParams(n_workers=0), "s4", progress=False), "inputs")
    slow = first_frames_shard(shard, work / "inputs" / "extract-first-frames.h5", args.slow_videos)
    n, full = len(rows), (0, 1, 2)
    cases = [
        Case("extract", "extract_shard", n, S4_FRAMES, full, functools.partial(_extract_run, rows), _extract_warm_up),
        Case("audio", "compute_audio_shard, yamnet", n, S4_FRAMES, full, functools.partial(_audio_run, (empty, shard)),
             _audio_warm_up, note="videos go to workers in chunks of audio.batch_seconds (64 s)"),
        Case("proposals:combo", "COMBO maskige tree (pre_SAM_mask)", n, S4_FRAMES, (0,),
             functools.partial(_combo_run, root / "s4_data" / "pre_SAM_mask", manifest, (empty, shard)),
             _combo_warm_up, serial=True, note="reads the tree in the stage's process: no dask"),
    ]  # fmt: skip
    presets = [_mobile_sam_case(p, args, (empty, slow), (empty, demo_shard)) for p in args.presets]
    # The presets timed on one worker (efficiency borrowed from `fast`) go last: they are optional extras.
    cases += [c for c in presets if not c.efficiency_from]
    if args.semantic_sam:
        cases.append(_semantic_sam_case(args, work, (empty, slow)))
    return cases + [c for c in presets if c.efficiency_from]


def _mobile_sam_case(preset: str, args: argparse.Namespace, slow: tuple[Path, Path], demo: tuple[Path, Path]) -> Case:
    """A MobileSAM preset: demo on whole videos (0, 1, 2 workers); the 1024-input presets on one-frame videos,
    on 1 and 2 workers (fast) or 1 worker (reference, quality: efficiency from fast)."""
    from pipeline.proposals.config import ProposalParams

    params = ProposalParams(backend="mobile_sam", preset=preset, cache_dir="")
    one_worker, is_slow = preset in ONE_WORKER_PRESETS, preset != "demo"
    count, frames = (args.slow_videos, 1) if is_slow else (args.demo_videos, S4_FRAMES)
    modes = (1,) if one_worker else (1, 2) if is_slow else (0, 1, 2)
    return Case(f"proposals:mobile_sam:{preset}", f"MobileSAM preset {preset}", count, frames, modes,
                functools.partial(_propose_run, params, slow if is_slow else demo),
                functools.partial(_propose_warm_up, params),
                efficiency_from="proposals:mobile_sam:fast" if one_worker else None,
                note="one-frame videos (frame 0 of each)" if is_slow else "")  # fmt: skip


def _semantic_sam_case(args: argparse.Namespace, work: Path, slow: tuple[Path, Path]) -> Case:
    """Semantic-SAM on the CPU through the proposals stage, with a random-weight checkpoint written here."""
    from pipeline.proposals.config import ProposalParams

    checkpoint = random_semantic_sam_checkpoint(work / "semantic_sam_random.pth", tiny=args.quick)
    params = ProposalParams(backend="semantic_sam", checkpoint=str(checkpoint), cache_dir="",
                            semantic_sam={"device": "cpu"})  # fmt: skip
    arch = "TINY config (quick smoke run only)" if args.quick else "SwinL"
    return Case("proposals:semantic_sam", f"Semantic-SAM CPU, {arch}, random weights", args.slow_videos, 1, (1, 2),
                functools.partial(_propose_run, params, slow), functools.partial(_propose_warm_up, params),
                note="seeded random weights (no official checkpoint offline): official FLOPs, fewer kept masks; "
                "one-frame videos", extra={"architecture": arch, "checkpoint_bytes": checkpoint.stat().st_size})  # fmt: skip


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
