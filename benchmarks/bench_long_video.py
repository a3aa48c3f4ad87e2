"""Long videos: seconds of processing per minute of video and peak memory of each feature stage.

Method
------
Videos: 640x360 H.264 at 25 fps (a typical web video) with 44.1 kHz stereo AAC, made once with
``media.encode_video`` (x264 ``ultrafast``; frames are 5 s of drifting shapes and texture,
shifted a little on every repeat so that no two seconds are the same) and cached under
``benchmarks/results/cache/``. Frames and audio reach the encoder in 5 s / 60 s chunks, so a 2-hour
video (180,000 frames, 635 MB of 44.1 kHz stereo audio) is made without holding it.

Each measurement runs in a fresh child process (so peak RSS is its own), T = whole seconds:

* **extract_clip**: ``media.extract_clip(path, T, (224, 224))``, the call ``avs extract`` makes per
  video; it returns all T frames (uint8 [T,224,224,3], 147 KB per second) and T s of audio
  (32 KB per second), so its memory grows with the *output*, not with the decoded video.
* **windows only**: ``media.iter_clip_windows`` consumed window by window (64 s each) and
  discarded, as ``avs predict`` can use it: memory is bounded by one window.
* **avs extract**: the whole stage on a one-video folder dataset (``seconds: null``), shard
  written with gzip (the manifest is built beforehand, untimed).
* **avs audio**: the audio stage (YAMNet, in-process) on that extraction shard: T log-mel examples and
  embeddings, read and written a window (64 s) at a time.
* **avs proposals**: the proposals stage (MobileSAM, preset ``fast``: the cheapest real backend;
  ``--proposal-preset``; no cache) on that extraction shard, a window of 64 frames per work item.
  Tens of CPU seconds per frame: its own, shorter ``--proposal-minutes`` list.

Every stage runs with ``dask.n_workers: 0`` (in-process), so the process's peak RSS holds all its work.

Reported per run: wall seconds, seconds per minute of video, CPU seconds (Python + ffmpeg), peak
RSS of the Python process (VmHWM, Linux) and its growth over the process after its imports, and
the largest RSS among its ffmpeg children (sampled every 20 ms). Run with ``nice``:
the 2-core machine is shared, so wall times are upper bounds.

    nice -n 10 python benchmarks/bench_long_video.py            # extract/audio 1, 10, 30 min; proposals 1, 10
    nice -n 10 python benchmarks/bench_long_video.py --minutes 120 --proposal-minutes   # 2 hours, no proposals
    nice -n 10 python benchmarks/bench_long_video.py --quick    # 1 minute only (smoke run)
    ... --results scratch/long.json                             # elsewhere than benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import RESULTS_DIR, machine_info, moving_frames, print_table, tone, write_json  # noqa: E402

from pipeline import media  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CACHE = RESULTS_DIR / "cache" / "bench_long_video"
SIZE, FPS, HEIGHT, WIDTH = (224, 224), 25, 360, 640
MODES = ("extract_clip", "windows only", "avs extract", "avs audio")  # the --minutes list
PROPOSAL_MODES = ("avs extract", "avs proposals")  # the --proposal-minutes list (extract makes its input)
STAGE_MODES = {"avs extract": "extract", "avs audio": "audio", "avs proposals": "proposals"}
AUDIO_CHUNK_SECONDS = 60


def make_video(minutes: int) -> Path:
    """The cached ``minutes``-long test video (made on first use)."""
    path = CACHE / f"long_{minutes}min_{WIDTH}x{HEIGHT}_{FPS}fps.mp4"
    if path.is_file():
        return path
    base = moving_frames(5 * FPS, HEIGHT, WIDTH)
    repeats = minutes * 60 // 5
    chunks = (np.roll(base, 7 * r, axis=2) for r in range(repeats))  # a new shift every 5 s
    # 60 s of a 440 Hz tone repeats exactly (440 whole periods per second), so one chunk serves them all
    audio = tone(AUDIO_CHUNK_SECONDS, rate=44_100, channels=2)
    audio_chunks = (audio for _ in range(minutes * 60 // AUDIO_CHUNK_SECONDS))
    started = time.perf_counter()
    media.encode_video(path, chunks, FPS, audio_chunks, audio_rate=44_100, crf=23, preset="ultrafast")
    print(f"made {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


# ------------------------------------------------------------------------------ child side
def _run_mode(mode: str, path: Path, seconds: int, workdir: Path) -> dict:
    if mode == "extract_clip":
        clip = media.extract_clip(path, seconds, SIZE)
        return {"frames_shape": list(clip.frames.shape), "audio_samples": clip.audio_samples}
    if mode == "windows only":
        count = 0
        for window in media.iter_clip_windows(path, seconds, SIZE):
            count += len(window.frames)
        return {"seconds_seen": count}
    from stages.cli import main

    stage = STAGE_MODES[mode]
    code = main([stage, "--params", str(workdir / "params.yaml"), "--dataset", "long", "--shard", "0", "--no-progress"])
    return {"exit_code": code}


def _peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would include the parent's at fork time)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


class ChildSampler:
    """Samples the RSS of this process's ffmpeg children every 20 ms; keeps the largest seen."""

    def __init__(self) -> None:
        import psutil

        self.me, self.peak, self.done = psutil.Process(), 0.0, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.done.wait(0.02):
            for kid in self.me.children():
                try:
                    self.peak = max(self.peak, kid.memory_info().rss / 2**20)
                except Exception:  # noqa: BLE001 - the child may have ended meanwhile
                    pass

    def __enter__(self) -> ChildSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def child(mode: str, path: Path, seconds: int, workdir: Path) -> None:
    """Run one measurement and print its numbers as one JSON line."""
    import stages.cli  # noqa: F401 - imported before the baseline, as a user's process would have it

    baseline = _peak_rss_mb()
    started = time.perf_counter()
    with ChildSampler() as sampler:
        details = _run_mode(mode, path, seconds, workdir)
    wall = time.perf_counter() - started
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                "python_baseline_rss_mb": baseline,
                "python_peak_rss_mb": peak,
                "python_growth_mb": peak - baseline,
                "ffmpeg_peak_rss_mb": sampler.peak,
                **details,
            }
        )
    )


# ------------------------------------------------------------------------------ parent side
def prepare_stage(path: Path, minutes: int, proposal_preset: str) -> Path:
    """A one-video folder dataset for the stages (manifest built here, untimed)."""
    import yaml

    from stages.cli import main

    workdir = CACHE / f"stage_{minutes}min"
    videos = workdir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    link = videos / path.name
    if link.is_symlink():  # made by an earlier version; folder sources no longer follow links out of the root
        link.unlink()
    if not link.exists():
        os.link(path, link)  # a hard link: a plain file of the folder, no copy
    (workdir / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {
                    "root": str(workdir / "data"),
                    "manifests": str(workdir / "manifests"),
                    "datasets": ["long"],
                    "shards": [0],
                },
                "dask": {"n_workers": 0},
                "manifest": {"datasets": {"long": {"source": "folder", "root": str(videos), "seconds": None}}},
                "extract": {"frame_size": list(SIZE)},
                "audio": {"encoder": "yamnet"},
                "proposals": {"backend": "mobile_sam", "preset": proposal_preset, "cache_dir": ""},
            }
        )
    )
    assert main(["manifest", "--params", str(workdir / "params.yaml"), "--dataset", "long", "--no-progress"]) == 0
    return workdir


def measure(mode: str, path: Path, seconds: int, workdir: Path) -> dict:
    if mode in STAGE_MODES:  # the bench's own earlier output: a stage would copy its video instead of computing it
        shard = workdir / "data" / "long" / STAGE_MODES[mode] / "shard-0.h5"
        shard.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path), str(seconds), str(workdir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} on {path.name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("exit_code", 0) != 0:
        raise RuntimeError(f"{mode} on {path.name} exited {result['exit_code']}: {proc.stdout.strip()[-500:]}")
    return result


def modes_for(minutes: int, args: argparse.Namespace) -> list[str]:
    """The modes measured on the ``minutes`` video, in order (extract before the stages that read its shard)."""
    wanted = (list(MODES) if minutes in args.minutes else []) + (
        list(PROPOSAL_MODES) if minutes in args.proposal_minutes else []
    )
    return list(dict.fromkeys(wanted))  # extract once, before proposals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 minute only")
    parser.add_argument("--minutes", type=int, nargs="+", default=[1, 10, 30], help="videos for extract and audio")
    parser.add_argument("--proposal-minutes", type=int, nargs="*", default=[1, 10], help="videos for proposals")
    parser.add_argument("--proposal-preset", default="fast", help="proposals.preset (fast: cheapest real backend)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "bench_long_video.json", help="JSON written")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "PATH", "SECONDS", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path, seconds, workdir = args.child
        return child(mode, Path(path), int(seconds), Path(workdir))
    if args.quick:
        args.minutes, args.proposal_minutes = [1], [1]
    if any(m < 1 for m in [*args.minutes, *args.proposal_minutes]):
        parser.error("minutes must be >= 1")
    results, rows = [], []
    for minutes in sorted({*args.minutes, *args.proposal_minutes}):
        path = make_video(minutes)
        workdir = prepare_stage(path, minutes, args.proposal_preset)
        seconds = media.seconds_in(media.probe(path))
        for mode in modes_for(minutes, args):
            run = {"minutes": minutes, "mode": mode, "seconds": seconds, **measure(mode, path, seconds, workdir)}
            run["s_per_min"] = run["wall_s"] / (seconds / 60)
            results.append(run)
            rows.append(
                [
                    minutes,
                    mode,
                    run["wall_s"],
                    run["s_per_min"],
                    run["cpu_s"],
                    run["python_peak_rss_mb"],
                    run["python_growth_mb"],
                    run["ffmpeg_peak_rss_mb"],
                ]
            )
            print(json.dumps(run), flush=True)
    table = print_table(
        ["minutes", "mode", "wall s", "s / min of video", "CPU s", "Python peak MB", "growth MB", "ffmpeg peak MB"],
        rows,
        title=f"Long videos ({WIDTH}x{HEIGHT} H.264 {FPS} fps -> T frames at {SIZE[0]}x{SIZE[1]})",
    )
    write_json(
        args.results,
        {
            "machine": machine_info(),
            "video": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "codec": "h264"},
            "frame_size": list(SIZE),
            "proposal_preset": args.proposal_preset,
            "results": results,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
