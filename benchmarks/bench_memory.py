"""Peak memory (RSS) of ``avs extract`` as the manifest grows: in-process vs local dask cluster.

Method
------
One tiny clip (1.2 s, 64x64, 25 fps, 16 kHz mono AAC) is made once with ``media.encode_video``
and hard-linked under N names (N = 100 and 1,000; quick: 20 and 100). The manifest CSV is written
directly from one probe of that clip (``ManifestRow`` per name, T = 1), so no N probes are paid.
Then ``avs extract --manifest M --out O --workers K --no-progress`` (default params otherwise:
224x224 frames) runs as a subprocess for K = 0 (in-process) and K = 2 (a local cluster: nanny +
2 worker processes), each (N, K) once, in a fresh wrapper process, and memory is read two ways:

* ``max RSS (getrusage)``: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the wrapper after
  ``avs extract`` exits, i.e. the peak RSS of the largest single process in the tree (the main
  process or one dask worker; worker processes are reaped by avs, so they count).
  This includes the short-lived ffmpeg processes.
* ``tree peak`` and per-role peaks: the process tree (avs and every descendant) sampled with
  psutil every 50 ms; the sum of RSS over the tree at each sample (its maximum is the memory the
  whole run needs at once; RSS of shared pages is counted once per process, so it overstates),
  and the peaks of the main ``avs`` process, of the largest dask process (nanny-spawned worker or
  its helper processes) and of the largest ffmpeg process.

Goal: flat memory -- the 1,000-video run should need no more than the 100-video run (plus a few MB).

    python benchmarks/bench_memory.py            # 100 vs 1,000 videos
    python benchmarks/bench_memory.py --quick    # 20 vs 100 videos
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import RESULTS_DIR, machine_info, print_table, tone, write_json  # noqa: E402

from pipeline import media  # noqa: E402
from pipeline.manifest import HashCache, ManifestRow, write_manifest  # noqa: E402

CACHE = RESULTS_DIR / "cache" / "bench_memory"
CLIP_SECONDS = 1.2
T = 1
WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(json.dumps({'rc': rc, 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def make_clip() -> Path:
    path = CACHE / "tiny_64x64_1.2s.mp4"
    if not path.is_file():
        n = int(round(CLIP_SECONDS * 25))
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, size=(n, 64, 64, 3), dtype=np.uint8)
        media.encode_video(path, frames, 25, tone(CLIP_SECONDS))
    return path


def make_manifest(clip: Path, folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = media.probe(clip)
    sha = HashCache(None).sha256(clip)
    rows = []
    for i in range(count):
        path = folder / f"clip{i:05d}.mp4"
        if not path.exists():
            path.hardlink_to(clip)
        rows.append(
            ManifestRow(
                video_id=path.name,
                split="test",
                task="raw",
                source_video=str(path),
                source_sha256=sha,
                duration=f"{info.duration:.3f}",
                fps=f"{info.fps:g}",
                audio_channels=str(info.audio_channels or ""),
                audio_rate=str(info.audio_rate or ""),
                num_seconds=T,
            )
        )
    manifest = folder.parent / f"manifest_{count}.csv"
    write_manifest(rows, manifest)
    return manifest


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` under the wrapper; sample the process tree's RSS with psutil while it runs."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *cmd], stdout=subprocess.PIPE, text=True)
    wrapper = psutil.Process(proc.pid)
    peaks = {"tree": 0, "main": 0, "worker": 0, "ffmpeg": 0, "processes": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                kids = wrapper.children(recursive=True)
            except psutil.Error:
                break
            total = 0
            for p in kids:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                try:
                    is_ffmpeg = "ffmpeg" in p.name()
                    role = "ffmpeg" if is_ffmpeg else "main" if p.ppid() == proc.pid else "worker"
                except psutil.Error:
                    continue
                peaks[role] = max(peaks[role], rss)
            peaks["tree"] = max(peaks["tree"], total)
            peaks["processes"] = max(peaks["processes"], len(kids))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    stop.set()
    thread.join()
    result = json.loads(out.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {result['rc']}")
    mib = 1024 * 1024
    return {
        "wall_s": time.perf_counter() - start,
        "maxrss_mib": result["maxrss_kb"] / 1024,
        "tree_peak_mib": peaks["tree"] / mib,
        "main_peak_mib": peaks["main"] / mib,
        "worker_peak_mib": peaks["worker"] / mib,
        "ffmpeg_peak_mib": peaks["ffmpeg"] / mib,
        "max_processes": peaks["processes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_memory.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 vs 100 videos")
    parser.add_argument("--counts", type=int, nargs="+", help="manifest sizes (default 100 1000; quick 20 100)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="--workers values (default 0 2)")
    args = parser.parse_args(argv)
    counts = args.counts or ([20, 100] if args.quick else [100, 1000])
    avs = str(Path(sys.executable).parent / "avs")

    clip = make_clip()
    results = []
    with tempfile.TemporaryDirectory(prefix="avs-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        params = tmp / "params.yaml"
        params.write_text(
            yaml.safe_dump(
                {
                    "data": {
                        "root": str(tmp / "data"),
                        "manifests": str(tmp / "m"),
                        "datasets": ["mem"],
                        "shards": [0],
                    },
                    "dask": {"n_workers": 0},
                    "extract": {"frame_size": [224, 224]},
                }
            )
        )
        manifests = {n: make_manifest(clip, tmp / "videos", n) for n in counts}
        for workers in args.workers:
            for n in counts:
                out = tmp / f"shard_{workers}_{n}.h5"
                cmd = [
                    avs,
                    "extract",
                    "--params",
                    str(params),
                    "--manifest",
                    str(manifests[n]),
                    "--out",
                    str(out),
                    "--workers",
                    str(workers),
                    "--no-progress",
                ]
                r = measure(cmd)
                r.update({"workers": workers, "videos": n, "shard_mib": out.stat().st_size / 2**20})
                results.append(r)
                print(
                    f"workers={workers} videos={n}: {r['wall_s']:.1f} s, max RSS {r['maxrss_mib']:.0f} MiB, "
                    f"tree peak {r['tree_peak_mib']:.0f} MiB",
                    flush=True,
                )
                out.unlink()

    rows = []
    for r in results:
        first = next(x for x in results if x["workers"] == r["workers"] and x["videos"] == counts[0])
        rows.append(
            [
                "in-process" if r["workers"] == 0 else f"cluster, {r['workers']} workers",
                r["videos"],
                r["wall_s"],
                r["videos"] / r["wall_s"],
                r["maxrss_mib"],
                r["main_peak_mib"],
                r["worker_peak_mib"] if r["workers"] else float("nan"),
                r["ffmpeg_peak_mib"],
                r["tree_peak_mib"],
                f"{r['tree_peak_mib'] - first['tree_peak_mib']:+.1f}",
                r["shard_mib"],
            ]
        )
    table = print_table(
        [
            "mode",
            "videos",
            "wall s",
            "videos/s",
            "max RSS MiB",
            "main peak",
            "worker peak",
            "ffmpeg peak",
            "tree peak",
            "tree vs first",
            "shard MiB",
        ],
        rows,
        title=f"avs extract peak memory, {CLIP_SECONDS} s 64x64 clips -> T={T} x 224x224 "
        f"(MiB; max RSS = getrusage of the largest process; tree = psutil sum over all processes)",
    )
    write_json(
        args.out,
        {"benchmark": "bench_memory", "quick": args.quick, "machine": machine_info(), "runs": results, "table": table},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
