"""The feature DAG at AVSBench size: how each cost grows from 1/10 to the full dataset.

For each ``--fractions`` point it writes release trees with the real counts (benchmarks/avsbench_full.py,
cached across runs), makes a DVC workspace of this checkout beside them (the project's dvc.yaml and
params.yaml, with the demo datasets replaced by the generated ones and COMBO's maskiges as the proposal
source), and measures, with ``/usr/bin/time`` around each command:

* every feature stage item under ``dvc repro --single-item``: wall and CPU seconds, peak RSS (the
  largest process of the item), output bytes; summed per stage and divided by the videos;
* ``dvc status`` and ``dvc repro`` with nothing changed (the whole DAG up to the features);
* adding one video to the S4 tree (what reruns and how long, against the full feature time) and editing
  one label PNG.

Shards scale with the data (about ``--videos-per-shard`` S4 videos per shard), as a user would set
them. Results: benchmarks/results/scale.json (merged per fraction) and a table on stdout.

    python benchmarks/bench_scale.py --fractions 0.1 0.25 1.0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import avsbench_full  # noqa: E402
from _bench_common import machine_info, print_table  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "scale.json"
FEATURE_STAGES = ("manifest", "extract", "audio", "combo_maskiges")  # COMBO's maskiges: no SAM model runs
CODE = ("pipeline", "stages", "train", "pyproject.toml", "dvc.yaml", "params.yaml", ".dvcignore")
ROOTS = {"s4": "Single-source", "ms3": "Multi-sources", "avss": "AVSBench_semantic"}
MASKIGE_TREES = {  # the pre_SAM_mask folders themselves, so each is the dependency of its dataset's item only
    "s4": "Single-source/s4_data/pre_SAM_mask",
    "ms3": "Multi-sources/ms3_data/pre_SAM_mask",
    "avss": "AVSBench_semantic/pre_SAM_mask/AVSBench_semantic",
}
SOURCES = {"s4": "avsbench_s4", "ms3": "avsbench_ms3", "avss": "avsbench_semantic"}


def timed(cmd: list[str], cwd: Path) -> dict:
    """Runs ``cmd`` under GNU time: wall, user+sys CPU seconds and the peak RSS of its largest process."""
    stats = cwd / ".time.txt"
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-o", str(stats), "-f", "%U %S %M", *cmd], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    user, sys_, rss_kb = stats.read_text().split()[-3:]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(float(user) + float(sys_), 2),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "stdout": proc.stdout,
    }


def make_workspace(ws: Path, raw: Path, datasets: list[str], shards: int) -> None:
    """This checkout's code and DAG, pointed at the generated trees (feature stages only matter here)."""
    ws.mkdir(parents=True, exist_ok=True)
    for name in CODE:
        src, dst = REPO / name, ws / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(datasets=datasets, shards=list(range(shards)))
    params["manifest"]["datasets"] = {d: {"source": SOURCES[d], "root": str(raw / ROOTS[d])} for d in datasets}
    params["proposals"].update(datasets=[], maskige_trees={d: str(raw / MASKIGE_TREES[d]) for d in datasets})
    params["train"]["datasets"] = params["evaluate"]["datasets"] = [d for d in datasets if d != "avss"]
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dag = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dag["stages"].pop("demo_data")
    for stage in ("train", "evaluate"):
        deps = dag["stages"][stage]["deps"]
        dag["stages"][stage]["deps"] = [
            d.replace("data/demo_s4/", "data/s4/").replace("data/demo_ms3/", "data/ms3/") for d in deps
        ]
    (ws / "dvc.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    if not (ws / ".dvc").exists():
        subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=ws, check=True)
        subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=ws, check=True)


def stage_items(ws: Path, stage: str) -> list[str]:
    """The items of a (foreach / matrix) stage, as ``dvc repro --single-item`` names them."""
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=ws, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.split() if line == stage or line.startswith(f"{stage}@")]


def output_bytes(ws: Path, stage: str) -> int:
    folder = "proposals" if stage == "combo_maskiges" else stage
    return sum(p.stat().st_size for p in (ws / "data").glob(f"*/{folder}/*") if p.is_file())


def run_features(ws: Path, videos: int) -> dict:
    """Each feature stage item in DAG order; per-stage sums and per-video costs."""
    result = {}
    for stage in FEATURE_STAGES:
        items = stage_items(ws, stage)
        runs = [timed(["dvc", "repro", "--single-item", item], ws) for item in items]
        wall, cpu = sum(r["wall_s"] for r in runs), sum(r["cpu_s"] for r in runs)
        result[stage] = {
            "items": len(items),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "wall_s_per_video": round(wall / videos, 4),
            "cpu_s_per_video": round(cpu / videos, 4),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "output_bytes_per_video": round(output_bytes(ws, stage) / videos) if stage != "manifest" else None,
        }
        print(f"  {stage}: {result[stage]}", flush=True)
    return result


def reruns(stdout: str) -> list[str]:
    return [line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage '")]


def features_target(ws: Path) -> list[str]:
    return [i for s in FEATURE_STAGES for i in stage_items(ws, s)]


def add_one_video(raw: Path, ws: Path) -> dict:
    """A new S4 train video (files + meta row), then ``dvc repro`` of the feature stages."""
    video = avsbench_full.Video("s4", "train", "dog_barking", "zzAddedOne0", 7)
    avsbench_full.write_video(raw, video)
    meta = raw / "Single-source" / "s4_meta_data.csv"
    if video.name not in meta.read_text():
        with meta.open("a") as f:
            f.write(f"{video.name},0,{video.category},train\n")
    run = timed(["dvc", "repro", *features_target(ws)], ws)
    return {"wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "reran": reruns(run["stdout"])}


def edit_one_label(raw: Path, ws: Path) -> dict:
    label = sorted((raw / "Single-source" / "s4_data" / "gt_masks" / "test").rglob("*_2.png"))[0]
    img = Image.open(label).convert("L")
    pixels = bytearray(img.tobytes())
    pixels[0] = 255 - pixels[0]  # one pixel of one ground-truth mask flips
    Image.frombytes("L", img.size, bytes(pixels)).save(label)
    run = timed(["dvc", "repro", *features_target(ws)], ws)
    return {"wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "reran": reruns(run["stdout"])}


LOADER_PROBE = """
import json, sys, time
import torch
from torch.utils.data import DataLoader
from train.augment import Augmentation
from train.data import ClipDataset, ClipSource, collate_clips
from train.sampler import LengthGroupedSampler
datasets, shards, workers, seconds = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(1)
start = time.perf_counter()
dataset = ClipDataset(datasets, shards, "train", ClipSource("data", size=(224, 224)), Augmentation((224, 224), (0.5, 2.0), True, 0.2))
index_s = time.perf_counter() - start
sampler = LengthGroupedSampler([c.num_frames for c in dataset.clips], 8, seed=0)
loader = DataLoader(dataset, batch_sampler=list(sampler), collate_fn=collate_clips, num_workers=workers,
                    multiprocessing_context="fork" if workers else None)
clips, start = 0, time.perf_counter()
for batch in loader:
    clips += batch["frames"].shape[0]
    if time.perf_counter() - start > seconds:
        break
print(json.dumps({"clips": len(dataset), "index_s": round(index_s, 2), "clips_per_s": round(clips / (time.perf_counter() - start), 1)}))
"""


def loader_rates(ws: Path, datasets: list[str], shards: int) -> dict:
    """Training clips per second (batch 8, augmentation on, 224) over every train shard, for 0/1/2 workers."""
    rates = {}
    for workers in (0, 1, 2):
        cmd = [
            sys.executable,
            "-c",
            LOADER_PROBE,
            json.dumps(datasets),
            json.dumps(list(range(shards))),
            str(workers),
            "20",
        ]
        run = timed(cmd, ws)
        rates[f"{workers}_workers"] = {
            **json.loads(run["stdout"].strip().splitlines()[-1]),
            "peak_rss_mb": run["peak_rss_mb"],
        }
    return rates


def until_training_starts(ws: Path) -> dict:
    """``train.max_steps`` set to 1 in params.yaml, then ``dvc repro`` (what ``dvc exp run -S`` does, without
    the git bookkeeping of a workspace that has no git): seconds until the train stage's command starts."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"]["max_steps"] = 1
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = None
    for line in proc.stdout:
        if started is None and line.startswith("Running stage 'train'"):
            started = time.perf_counter() - start
    proc.wait()
    return {"until_train_starts_s": round(started, 1) if started else None, "whole_s": round(time.perf_counter() - start, 1),
            "exit": proc.returncode}  # fmt: skip


def evaluate_cost(ws: Path) -> dict:
    """``avs evaluate`` of the (1-step) checkpoint over the test splits: wall, CPU and peak RSS."""
    ckpt = ws / "data" / "runs" / "train" / "model.pt"  # the DAG's, trained one step by until_training_starts
    run = timed(["avs", "evaluate", "--checkpoint", str(ckpt), "--out", "metrics/scale-eval", "--no-progress"], ws)
    return {k: run[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")}


def measure(fraction: float, datasets: list[str], out: Path, per_shard: int) -> dict:
    raw, ws = out / f"raw-{fraction:g}", out / f"ws-{fraction:g}"
    gen = avsbench_full.generate(raw, datasets, fraction, seed=0, workers=os.cpu_count() or 1)
    videos = sum(gen["videos"].values())
    shards = max(1, math.ceil(gen["videos"].get("s4", videos) / per_shard))
    print(f"fraction {fraction:g}: {gen['videos']} videos, {shards} shards", flush=True)
    make_workspace(ws, raw, datasets, shards)
    point = {"fraction": fraction, "videos": gen["videos"], "frames": gen["frames"], "shards": shards}
    point["stages"] = run_features(ws, videos)
    point["feature_total_wall_s"] = round(sum(s["wall_s"] for s in point["stages"].values()), 1)
    target = features_target(ws)
    point["dvc_status_s"] = timed(["dvc", "status", *target], ws)["wall_s"]
    noop = timed(["dvc", "repro", *target], ws)
    point["dvc_repro_noop_s"], point["noop_reran"] = noop["wall_s"], reruns(noop["stdout"])
    point["add_one_video"] = add_one_video(raw, ws)
    point["add_one_video"]["share_of_features"] = round(
        point["add_one_video"]["wall_s"] / point["feature_total_wall_s"], 4
    )
    point["edit_one_label"] = edit_one_label(raw, ws)
    point["loader"] = loader_rates(ws, [d for d in datasets if d != "avss"], shards)
    point["max_steps_1_repro"] = until_training_starts(ws)
    point["evaluate"] = evaluate_cost(ws)
    return point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1])
    parser.add_argument("--datasets", nargs="+", default=["s4", "ms3"], choices=list(ROOTS))
    parser.add_argument("--out", type=Path, default=REPO / "data" / "scale")
    parser.add_argument("--videos-per-shard", type=int, default=300)
    args = parser.parse_args(argv)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"points": {}}
    results["machine"] = machine_info()
    for fraction in args.fractions:
        point = measure(fraction, args.datasets, args.out.resolve(), args.videos_per_shard)
        results["points"][f"{fraction:g}"] = point
        RESULTS.write_text(json.dumps(results, indent=1))
    rows = [
        [f, st, p["stages"][st]["items"], p["stages"][st]["wall_s_per_video"], p["stages"][st]["cpu_s_per_video"],
         p["stages"][st]["peak_rss_mb"], p["stages"][st]["output_bytes_per_video"]]
        for f, p in sorted(results["points"].items()) for st in FEATURE_STAGES
    ]  # fmt: skip
    print(
        print_table(["fraction", "stage", "items", "wall s/video", "cpu s/video", "peak RSS MB", "bytes/video"], rows)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
