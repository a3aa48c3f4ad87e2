"""The feature DAG at AVSBench size: how each cost grows from 1/10 to the full dataset.

For each ``--fractions`` point it writes release trees with the real counts (benchmarks/avsbench_full.py,
cached across runs), makes a fresh DVC workspace of this checkout beside them (the project's pipeline
files, :data:`PIPELINE_FILES`, and its params.yaml, with the demo datasets replaced by the generated
ones and COMBO's maskiges as the proposal source), and measures what a user runs, in this order:

1. every feature stage item under ``dvc repro --single-item`` with GNU time: wall and CPU seconds, peak
   RSS (the largest process of the item), output bytes; summed per stage and divided by the videos.
   The code digests and the always-changed tree stamps (stamps/dvc.yaml) run first: the stages depend on
   their outputs;
2. ``train.max_steps: 1`` in params.yaml, then ``dvc repro train``: seconds until DVC starts the train
   stage's command, and the whole run (stamps, the unchanged features, one training step);
3. ``dvc repro --single-item evaluate`` under GNU time: the one evaluate run (wall, CPU, peak RSS);
4. plain ``dvc status`` and ``dvc repro`` (of every pipeline file, :data:`REPRO`) with everything up to date,
   three times each, interleaved:
   median walls, and which stages ran (always-changed stamp stages listed apart from real reruns);
   each repro's wall is split into its ``avs`` commands' walls and the rest, DVC's own (:mod:`_command_times`);
5. ``dvc freeze train evaluate``; three times one S4 video added, then ``dvc repro`` (removed again, with a
   ``dvc repro`` of its own, between two adds); three times one label PNG edited, then ``dvc repro``: median
   wall (and every run's), what the first run reran, the medians of its commands' walls and of DVC's own, the share
   of the full feature wall and the marginal cost (that wall minus the no-op repro's wall) and its share;
   ``dvc unfreeze train evaluate``;
6. the training loader's clips/s for 0 / 1 / 2 workers.

``--skip`` leaves out train, evaluate or the loader at this run's points (skipped entries are absent
from the JSON); without train there is no checkpoint, so evaluate is left out too, and a skipped stage
is removed from the workspace's dvc.yaml before step 4 (``dag_removed`` in the JSON), so the no-op
figures never include a stage that has never run. ``--demo-baseline`` also times plain ``dvc status``
and the same ``dvc repro`` three times each in this repository itself (the demo DAG; only when its
``dvc status`` reports nothing to run except always-changed stages), at the start and again between the runs of
each point's no-op (step 4), and the table gives point / demo from the runs interleaved with the point's.

Shards scale with the data (about ``--videos-per-shard`` S4 videos per shard), as a user would set
them. Results: ``--results`` (default benchmarks/results/scale.json, points merged per fraction) and two
tables on stdout.

    python benchmarks/bench_scale.py --fractions 0.1 0.25 1.0 --demo-baseline
    python benchmarks/bench_scale.py --fractions 1.0 --skip evaluate loader
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import avsbench_full  # noqa: E402
from _bench_common import machine_info, write_json  # noqa: E402
from _command_times import avs_timed, command_walls, split_walls  # noqa: E402
from _scale_changes import add_one_video, edit_one_label, remove_added_video, remove_one_video  # noqa: E402
from _scale_tables import print_tables  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "scale.json"
# The feature stages (COMBO's maskiges: no SAM model runs): result key -> DVC's name (those of another pipeline
# file than dvc.yaml are prefixed with it).
FEATURE_STAGES = {
    "manifest": "manifest",
    "extract": "features/extract/dvc.yaml:extract",
    "audio": "features/audio/dvc.yaml:audio",
    "combo_maskiges": "features/proposals/dvc.yaml:combo_maskiges",
}
CODE_STAGE = "stamps/dvc.yaml:code_digest"  # data/code/<command>.json, which every stage depends on: first of all
CODE = ("pipeline", "stages", "train", "pyproject.toml", ".dvcignore")
# The pipeline files: the always-changed tree stamps have their own, whose small lock is all they rewrite.
PIPELINE_FILES = (
    "dvc.yaml",
    "stamps/dvc.yaml",
    "features/extract/dvc.yaml",
    "features/audio/dvc.yaml",
    "features/proposals/dvc.yaml",
)
# Every pipeline file's stages: with train frozen or removed, plain `dvc repro` (dvc.yaml's stages and their
# upstream) would not reach the feature families of features/*/dvc.yaml. In the project, train reads every
# feature folder, so plain `dvc repro` covers the same stages (docs/pipeline.md, "Pipeline files").
REPRO = ("dvc", "repro", "--all-pipelines")
ROOTS = {"s4": "Single-source", "ms3": "Multi-sources", "avss": "AVSBench_semantic"}
MASKIGE_TREES = {  # the pre_SAM_mask folders themselves, so each is the dependency of its dataset's item only
    "s4": "Single-source/s4_data/pre_SAM_mask",
    "ms3": "Multi-sources/ms3_data/pre_SAM_mask",
    "avss": "AVSBench_semantic/pre_SAM_mask/AVSBench_semantic",
}
DEFAULT_DATASETS = ("s4", "ms3")
SOURCES = {"s4": "avsbench_s4", "ms3": "avsbench_ms3", "avss": "avsbench_semantic"}
DEMO_RAW = "data/raw/demo/"  # the demo trees and their stamps: the workspace has no demo_data stage
SKIPPABLE = ("train", "evaluate", "loader")
FROZEN = ("train", "evaluate")  # frozen while a video is added and a label edited: features only
DEMO_REPEATS = 3


def code_env(cwd: Path) -> dict[str, str]:
    """The environment of a command run in ``cwd``: its ``avs`` imports the code copied there, not the
    editable install's (which may be another checkout)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))}


def timed(cmd: list[str], cwd: Path) -> dict:
    """Runs ``cmd`` under GNU time: wall, user+sys CPU seconds and the peak RSS of its largest process; and
    ``commands``: the wall of each ``avs`` command it ran (:mod:`_command_times`)."""
    with tempfile.TemporaryDirectory() as tmp, avs_timed(code_env(cwd)) as (env, log):  # never a file in cwd
        stats = Path(tmp) / "time.txt"
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", str(stats), "-f", "%U %S %M", *cmd],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        user, sys_, rss_kb = stats.read_text().split()[-3:]
        commands = command_walls(log.read_text()) if log.exists() else {}
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(float(user) + float(sys_), 2),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "stdout": proc.stdout,
        "commands": commands,
    }


def dvc(ws: Path, *args: str) -> str:
    """An untimed DVC command in ``ws``; its stdout."""
    proc = subprocess.run(["dvc", *args], cwd=ws, env=code_env(ws), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} in {ws} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# ---------------------------------------------------------------- workspace
def workspace_dag(dag: dict) -> dict:
    """One of the project's pipeline files for the bench workspace: no demo_data stage, no dependency on the demo trees
    (the stamp stages list the demo stamps only to run after demo_data), and train / evaluate read the
    generated datasets' features instead of the demo's."""
    dag["stages"].pop("demo_data", None)
    for stage in dag["stages"].values():
        body = stage.get("do", stage)  # foreach stages keep their deps under ``do``
        if "deps" in body:
            body["deps"] = [
                d.replace("data/demo_s4/", "data/s4/").replace("data/demo_ms3/", "data/ms3/")
                for d in body["deps"]
                if not str(d).startswith(DEMO_RAW)
            ]
    return dag


def make_workspace(ws: Path, raw: Path, datasets: list[str], shards: int) -> list[str]:
    """This checkout's code and DAG, pointed at the generated trees; returns ``dvc stage list``'s names.

    The workspace is made afresh (a previous run's dvc.lock would make the feature run a no-op)."""
    if ws.exists():
        shutil.rmtree(ws)  # this benchmark's own workspace from an earlier run
    ws.mkdir(parents=True)
    for name in CODE:
        src, dst = REPO / name, ws / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(datasets=datasets, shards=list(range(shards)))
    params["manifest"]["datasets"] = {d: {"source": SOURCES[d], "root": str(raw / ROOTS[d])} for d in datasets}
    params["proposals"].update(datasets=[], maskige_trees={d: str(raw / MASKIGE_TREES[d]) for d in datasets})
    params["train"]["datasets"] = params["evaluate"]["datasets"] = [d for d in datasets if d != "avss"]
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for file in PIPELINE_FILES:
        dag = workspace_dag(yaml.safe_load((REPO / file).read_text()))
        (ws / file).parent.mkdir(parents=True, exist_ok=True)
        (ws / file).write_text(yaml.safe_dump(dag, sort_keys=False))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=ws, check=True)
    subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=ws, check=True)
    return dvc(ws, "stage", "list", "--all", "--name-only").split()  # --all: stamps/dvc.yaml's stages too


def remove_stages(ws: Path, names: list[str]) -> None:
    """Drops stages from the workspace's dvc.yaml (those a ``--skip`` left without outputs)."""
    dag = yaml.safe_load((ws / "dvc.yaml").read_text())
    for name in names:
        dag["stages"].pop(name, None)
    (ws / "dvc.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))


def always_changed_stages(root: Path) -> list[str]:
    """The stages marked ``always_changed`` in the pipeline files of the project ``root`` (for a foreach stage,
    the flag sits under ``do``), named as DVC names them: ``stamps/dvc.yaml:trees``."""
    names = []
    for file in PIPELINE_FILES:
        if (root / file).is_file():
            prefix = "" if file == "dvc.yaml" else f"{file}:"
            stages = yaml.safe_load((root / file).read_text())["stages"]
            names += [prefix + name for name, body in stages.items() if body.get("do", body).get("always_changed")]
    return names


def stage_items(names: list[str], stage: str) -> list[str]:
    """The items of a (foreach / matrix) stage among ``dvc stage list`` names, as ``--single-item`` takes them."""
    return [n for n in names if n == stage or n.startswith(f"{stage}@")]


def output_bytes(ws: Path, stage: str) -> int:
    folder = "proposals" if stage == "combo_maskiges" else stage
    return sum(p.stat().st_size for p in (ws / "data").glob(f"*/{folder}/*") if p.is_file())


# ---------------------------------------------------------------- what ran
def ran(stdout: str, always: list[str]) -> dict:
    """Stages ``dvc repro`` ran, split into always-changed stamps and the stages that reran for real."""
    names = [line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage '")]
    stamp = [n for n in names if n.split("@")[0] in always]
    return {"reran": [n for n in names if n not in stamp], "always_changed_ran": stamp}


def pending(status: dict) -> dict:
    """``dvc status --json`` without the always-changed stages: what a ``dvc repro`` would really run."""
    return {stage: change for stage, change in status.items() if change != ["always changed"]}


# ---------------------------------------------------------------- steps
def run_features(ws: Path, names: list[str], always: list[str], videos: int) -> dict:
    """Each feature stage item in DAG order (code digests and tree stamps first); per-stage sums and per-video costs."""
    result = {}
    stages = {CODE_STAGE: CODE_STAGE, **{name: name for name in always}, **FEATURE_STAGES}
    for stage, dvc_name in stages.items():
        items = stage_items(names, dvc_name)
        if not items:
            continue
        runs = [timed(["dvc", "repro", "--single-item", item], ws) for item in items]
        wall, cpu = sum(r["wall_s"] for r in runs), sum(r["cpu_s"] for r in runs)
        has_bytes = stage in FEATURE_STAGES and stage != "manifest"
        result[stage] = {
            "items": len(items),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "wall_s_per_video": round(wall / videos, 4),
            "cpu_s_per_video": round(cpu / videos, 4),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "output_bytes_per_video": round(output_bytes(ws, stage) / videos) if has_bytes else None,
        }
        print(f"  {stage}: {result[stage]}", flush=True)
    return result


def train_one_step(ws: Path) -> dict:
    """``train.max_steps`` set to 1 in params.yaml, then ``dvc repro train`` (what ``dvc exp run -S`` does,
    without the git bookkeeping of a workspace that has no git): seconds until the train stage's command
    starts, and the whole run."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"]["max_steps"] = 1
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro", "train"], cwd=ws, env=code_env(ws), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if started is None and line.startswith("Running stage 'train'"):
            started = time.perf_counter() - start
    proc.wait()
    whole = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro train exited {proc.returncode}: {''.join(lines)[-2000:]}")
    return {"until_train_starts_s": round(started, 1) if started else None, "whole_s": round(whole, 1)}


def evaluate_alone(ws: Path) -> dict:
    """The DAG's evaluate stage alone, on the 1-step checkpoint: wall, CPU and peak RSS."""
    run = timed(["dvc", "repro", "--single-item", "evaluate"], ws)
    return {k: run[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")}


def noop(ws: Path, always: list[str], repeats: int = DEMO_REPEATS, beside: Path | None = None) -> dict:
    """Plain ``dvc status`` and ``dvc repro`` (:data:`REPRO`) with everything up to date, ``repeats`` times each,
    interleaved (as the demo baseline): medians, and every run's wall. With ``beside`` (the demo repository), the
    same there after each pair, as ``demo``: a ratio of two runs minutes apart moves with the machine's load."""
    status, repro, demo = [], [], []
    for _ in range(repeats):
        status.append(timed(["dvc", "status"], ws)["wall_s"])
        repro.append(timed(list(REPRO), ws))
        if beside is not None:
            demo.append((timed(["dvc", "status"], beside)["wall_s"], timed(list(REPRO), beside)["wall_s"]))
    beside_runs = {"demo": {
        "dvc_status_s": round(statistics.median(s for s, _ in demo), 2),
        "dvc_repro_noop_s": round(statistics.median(r for _, r in demo), 2),
        "runs_s": demo,
    }} if demo else {}  # fmt: skip
    return {
        **beside_runs,
        "dvc_status_s": round(statistics.median(status), 2),
        "dvc_repro_noop_s": round(statistics.median(run["wall_s"] for run in repro), 2),
        "dvc_status_runs_s": status,
        "dvc_repro_noop_runs_s": [run["wall_s"] for run in repro],
        **split_walls(repro),
        **ran(repro[-1]["stdout"], always),
    }


def change_then_repro(
    ws: Path,
    change: Callable[[], None],
    always: list[str],
    noop_s: float,
    features_s: float,
    undo: Callable[[], None] | None = None,
    repeats: int = DEMO_REPEATS,
) -> dict:
    """``repeats`` times: one change to the raw data, then ``dvc repro`` of every pipeline file (:data:`REPRO`),
    then (between two changes) ``undo`` and a repro of its own. The median wall (every run's too, and the undos'),
    what the first run ran, full and marginal shares: one run of a few seconds moves by ~20% on a shared machine."""
    runs, undone = [], []
    for repeat in range(repeats):
        change()
        runs.append(timed(list(REPRO), ws))
        if undo is not None and repeat < repeats - 1:
            undo()
            undone.append(timed(list(REPRO), ws)["wall_s"])
    wall = round(statistics.median(run["wall_s"] for run in runs), 2)
    result = {
        "wall_s": wall,
        "cpu_s": round(statistics.median(run["cpu_s"] for run in runs), 2),
        "runs_s": [run["wall_s"] for run in runs],
        **split_walls(runs),
        **ran(runs[0]["stdout"], always),
        "share_of_features": round(wall / features_s, 4),
        "marginal_s": round(wall - noop_s, 2),
        "marginal_share_of_features": round((wall - noop_s) / features_s, 4),
    }
    if undone:
        result["undo_runs_s"] = undone
    return result


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


# ---------------------------------------------------------------- the demo baseline
def demo_baseline(repo: Path, repeats: int = DEMO_REPEATS) -> dict | None:
    """Plain ``dvc status`` and ``dvc repro`` in ``repo`` (the demo DAG), ``repeats`` times each, interleaved;
    medians. None (and one line why) unless ``dvc status`` there has nothing to run but always-changed stages."""
    proc = subprocess.run(["dvc", "status", "--json"], cwd=repo, env=code_env(repo), capture_output=True, text=True)
    if proc.returncode != 0:
        print(
            f"demo baseline skipped: dvc status in the repository exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        )
        return None
    todo = pending(json.loads(proc.stdout or "{}"))
    if todo:
        first = next(iter(todo))
        print(
            f"demo baseline skipped: dvc status in the repository reports {len(todo)} stage(s) to run ({first}: {todo[first]})"
        )
        return None
    return {
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "repeats": repeats,
        **noop(repo, always_changed_stages(repo), repeats),
    }


# ---------------------------------------------------------------- one point
def measure(
    fraction: float, datasets: list[str], out: Path, per_shard: int, skip: set[str], demo: Path | None = None
) -> dict:
    raw, ws = out / f"raw-{fraction:g}", out / f"ws-{fraction:g}"
    remove_added_video(raw)
    gen = avsbench_full.generate(raw, datasets, fraction, seed=0, workers=os.cpu_count() or 1)
    videos = sum(gen["videos"].values())
    shards = max(1, math.ceil(gen["videos"].get("s4", videos) / per_shard))
    print(f"fraction {fraction:g}: {gen['videos']} videos, {shards} shards", flush=True)
    names = make_workspace(ws, raw, datasets, shards)
    always = always_changed_stages(ws)
    point = {"fraction": fraction, "videos": gen["videos"], "frames": gen["frames"], "shards": shards}
    point.update(workspace_stages=names, always_changed_stages=always, skipped=sorted(skip))
    point["stages"] = run_features(ws, names, always, videos)
    features_s = point["feature_total_wall_s"] = round(sum(s["wall_s"] for s in point["stages"].values()), 1)
    if "train" not in skip:
        point["max_steps_1_repro"] = train_one_step(ws)
        print(f"  train (max_steps 1): {point['max_steps_1_repro']}", flush=True)
    if not {"train", "evaluate"} & skip:
        point["evaluate"] = evaluate_alone(ws)
        print(f"  evaluate: {point['evaluate']}", flush=True)
    removed = [s for s in FROZEN if s in skip or (s == "evaluate" and "train" in skip)]
    if removed:
        remove_stages(ws, removed)
        point["dag_removed"] = removed
    point["noop"] = noop(ws, always, beside=demo)
    print(f"  no-op: {point['noop']}", flush=True)
    frozen = [s for s in FROZEN if s not in removed]
    if frozen:
        dvc(ws, "freeze", *frozen)
    noop_s = point["noop"]["dvc_repro_noop_s"]
    add, remove = (lambda: add_one_video(raw)), (lambda: remove_one_video(raw))
    point["add_one_video"] = change_then_repro(ws, add, always, noop_s, features_s, undo=remove)
    point["edit_one_label"] = change_then_repro(ws, lambda: edit_one_label(raw), always, noop_s, features_s)
    print(f"  add one video: {point['add_one_video']}\n  edit one label: {point['edit_one_label']}", flush=True)
    if frozen:
        dvc(ws, "unfreeze", *frozen)
    if "loader" not in skip:
        point["loader"] = loader_rates(ws, [d for d in datasets if d != "avss"], shards)
    return point


def point_key(fraction: float, datasets: list[str]) -> str:
    """A point's key in the results: its fraction, and its datasets when they are not the default S4 + MS3
    (so that a run with AVSS does not replace the S4 + MS3 point of the same fraction)."""
    key = f"{fraction:g}"
    return key if datasets == list(DEFAULT_DATASETS) else f"{key}-{'+'.join(datasets)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1])
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), choices=list(ROOTS))
    parser.add_argument("--out", type=Path, default=REPO / "data" / "scale")
    parser.add_argument("--videos-per-shard", type=int, default=300)
    parser.add_argument("--skip", nargs="+", default=[], choices=SKIPPABLE, help="steps left out at these points")
    parser.add_argument("--demo-baseline", action="store_true", help="also time plain dvc status / repro here")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON to merge this run's points into")
    args = parser.parse_args(argv)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    results = json.loads(args.results.read_text()) if args.results.exists() else {"points": {}}
    results["machine"] = machine_info()
    beside = None
    if args.demo_baseline and (demo := demo_baseline(REPO)) is not None:
        results["demo_baseline"], beside = demo, REPO  # and beside each point's no-op
        print(f"demo baseline: {demo}", flush=True)
    for fraction in args.fractions:
        point = measure(fraction, args.datasets, args.out.resolve(), args.videos_per_shard, set(args.skip), beside)
        results["points"][point_key(fraction, args.datasets)] = point
        write_json(args.results, results)
    print_tables(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
