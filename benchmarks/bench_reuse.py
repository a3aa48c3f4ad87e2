"""Adding one video to a shard: `avs extract` from scratch vs the rerun that reuses the unchanged videos.

Method
------
Data: an S4 release tree written by ``benchmarks/avsbench_full.py`` (frames + wav, e.g. ``--fraction 0.1
--datasets s4``: 493 videos), read as one shard (``data.shards: [0]``), so shard 0 holds every video.

1. ``avs manifest`` (untimed), then ``avs extract --dataset s4 --shard 0`` from scratch (timed);
2. one video added to the tree (a copy of the first train video's frames, masks and wav under a new
   name, plus its row in ``s4_meta_data.csv``), ``avs manifest`` again (untimed);
3. ``avs extract --dataset s4 --shard 0`` again (timed): it copies the unchanged videos from the
   previous shard (``pipeline/shards/reuse.py``) and extracts the new one;
4. the same shard from scratch into another file (``--no-reuse``, timed), and the two shards compared
   array for array and attribute for attribute.

Each command runs as a child process with the ``dask`` section of params.yaml (a local cluster, one
worker per core); wall and CPU seconds (children included) are reported. Run with ``nice``: the
machine may be shared, so wall times are upper bounds.

    nice -n 10 python benchmarks/avsbench_full.py --out data/raw/full --fraction 0.1 --datasets s4
    nice -n 10 python benchmarks/bench_reuse.py --raw data/raw/full --work benchmarks/results/cache/reuse
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import RESULTS_DIR, machine_info, print_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NEW_VIDEO = "zzAddedVideo01"


def write_params(work: Path, raw: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(root=str(work / "data"), manifests=str(work / "manifests"), datasets=["s4"], shards=[0])
    params["manifest"]["datasets"] = {"s4": {"source": "avsbench_s4", "root": str(raw / "Single-source")}}
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def avs(params: Path, *args: str) -> dict:
    """Run one avs command in a child process; wall and CPU seconds, its last output line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "stages.cli", *args, "--params", str(params), "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"avs {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"command": " ".join(args), "wall_s": wall, "cpu_s": cpu, "output": done.stdout.strip().splitlines()}


def remove_added_video(s4_root: Path) -> None:
    """Undo :func:`add_video` (a rerun of the benchmark starts from the generated tree)."""
    meta = s4_root / "s4_meta_data.csv"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(line for line in lines if not line.startswith(f"{NEW_VIDEO},")) + "\n")
    for path in sorted((s4_root / "s4_data").glob(f"*/*/*/{NEW_VIDEO}*")):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def add_video(s4_root: Path) -> None:
    """A new S4 train video: the first train video's files under a new name, and its metadata row."""
    meta = s4_root / "s4_meta_data.csv"
    lines = meta.read_text().splitlines()
    name, start, category, split = next(line.split(",") for line in lines[1:] if line.endswith(",train"))
    data = s4_root / "s4_data"
    for kind in ("visual_frames", "gt_masks"):
        source, target = data / kind / split / category / name, data / kind / split / category / NEW_VIDEO
        target.mkdir(exist_ok=True)
        for file in source.iterdir():
            shutil.copy(file, target / file.name.replace(name, NEW_VIDEO))
    shutil.copy(
        data / "audio_wav" / split / category / f"{name}.wav",
        data / "audio_wav" / split / category / f"{NEW_VIDEO}.wav",
    )
    meta.write_text("\n".join([*lines, f"{NEW_VIDEO},{start},{category},{split}"]) + "\n")


def same_shards(a: Path, b: Path) -> bool:
    sys.path.insert(0, str(REPO))
    from tests.pipeline.test_shard_reuse import assert_same_shards

    assert_same_shards(a, b)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", required=True, help="the --out folder of avsbench_full.py (with Single-source/)")
    parser.add_argument("--work", required=True, help="scratch folder for params, manifests and shards")
    parser.add_argument("--out", default=str(RESULTS_DIR / "bench_reuse.json"), help="JSON results file")
    args = parser.parse_args()
    raw, work = Path(args.raw).resolve(), Path(args.work).resolve()
    for old in ("data", "manifests", "scratch"):
        shutil.rmtree(work / old, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    params = write_params(work, raw)
    remove_added_video(raw / "Single-source")
    avs(params, "manifest", "--dataset", "s4")
    runs = {"from scratch": avs(params, "extract", "--dataset", "s4", "--shard", "0")}
    add_video(raw / "Single-source")
    avs(params, "manifest", "--dataset", "s4")
    runs["one video added, reuse"] = avs(params, "extract", "--dataset", "s4", "--shard", "0")
    shard, scratch = work / "data" / "s4" / "extract" / "shard-0.h5", work / "scratch" / "shard-0.h5"
    sliced = str(work / "data" / "s4" / "manifest" / "shard-0.csv")
    runs["one video added, from scratch"] = avs(
        params, "extract", "--dataset", "s4", "--shard", "0", "--manifest", sliced, "--out", str(scratch), "--no-reuse"
    )
    equal = same_shards(shard, scratch)
    rows = [[name, run["wall_s"], run["cpu_s"], run["output"][-1][:60]] for name, run in runs.items()]
    table = print_table(["extract s4 shard 0", "wall s", "CPU s", "last line"], rows, title="Adding one video")
    print(f"reuse shard equals the from-scratch shard (every array and attribute): {equal}")
    write_json(Path(args.out), {"machine": machine_info(), "runs": runs, "equal": equal, "table": table})


if __name__ == "__main__":
    main()
