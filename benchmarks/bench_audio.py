"""Audio features throughput: seconds of audio processed per second of compute.

Measures, on CPU with a fixed number of threads (default 2, the cores of the dev machine):

- the VGGish log-mel front end, batched (many clips stacked, one FFT call) against one
  0.96 s example at a time;
- each registered encoder (YAMNet int8 ONNX; VGGish with random weights, same speed as the
  released ones) batched (``--batch`` examples per call) against one example per call;
- the whole per-clip path used by ``avs audio`` (front end + YAMNet on 5 s clips).

Every case runs in a fresh spawned process, so its peak resident memory
(``resource.getrusage().ru_maxrss``) is its own; for numpy-only cases tracemalloc's peak is
reported too. Prints a table and writes JSON (default benchmarks/results/audio.json).

    python benchmarks/bench_audio.py
    python benchmarks/bench_audio.py --threads 1 --seconds 32 --out audio.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "audio.json"
CLIP_SECONDS = 5


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Band-limited-looking test audio: white noise plus a few tones, int16 at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = 0.05 * rng.standard_normal(t.size) + sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220, 660, 1500))
    return np.clip(wave * 32767, -32768, 32767).astype(np.int16)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _time(fn, min_seconds: float = 1.0, max_repeats: int = 50) -> float:
    """Median wall time of ``fn()`` over repeats that together take at least ``min_seconds``."""
    fn()  # warm-up (allocations, lazy initialisation)
    times: list[float] = []
    while len(times) < max_repeats and (sum(times) < min_seconds or len(times) < 3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def case_frontend(mode: str, seconds: int, threads: int) -> dict:
    from pipeline.audio import logmel

    # numpy only: its BLAS threads come from OPENBLAS_NUM_THREADS, set by main() before spawning.
    clips = seconds // CLIP_SECONDS
    audio = np.stack([_noise(CLIP_SECONDS, seed) for seed in range(clips)])
    total = clips * CLIP_SECONDS
    if mode == "batched":

        def work() -> None:
            logmel.logmel_examples(logmel.int16_to_float(audio))
    else:
        step = logmel.EXAMPLE_FRAMES * logmel.HOP_SAMPLES
        starts = [
            (clip, s)
            for clip in range(clips)
            for s in range(0, audio.shape[1] - logmel.MIN_SAMPLES_FOR_ONE_EXAMPLE + 1, step)
        ]

        def work() -> None:
            for clip, s in starts:
                logmel.logmel_examples(logmel.int16_to_float(audio[clip, s : s + logmel.MIN_SAMPLES_FOR_ONE_EXAMPLE]))

    rss_before = _peak_rss_mib()
    tracemalloc.start()
    work()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    elapsed = _time(work)
    return {
        "audio_seconds": total,
        "compute_seconds": elapsed,
        "tracemalloc_peak_mib": traced_peak / 2**20,
        "rss_before_mib": rss_before,
    }


def case_encoder(name: str, mode: str, seconds: int, threads: int, batch: int) -> dict:
    from pipeline.audio import logmel
    from pipeline.audio.encoders import build_encoder

    _set_threads(threads)
    config = {"allow_random_init": True} if name == "vggish" else {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_start = time.perf_counter()
        encoder = build_encoder(name, batch_size=batch if mode == "batched" else 1, num_threads=threads, **config)
        load_seconds = time.perf_counter() - load_start
    examples = logmel.logmel_examples(logmel.int16_to_float(_noise(seconds)), encoder.log_offset).astype(np.float32)
    rss_before = _peak_rss_mib()
    elapsed = _time(lambda: encoder.encode(examples))
    return {
        "audio_seconds": int(examples.shape[0]),
        "compute_seconds": elapsed,
        "load_seconds": load_seconds,
        "rss_before_mib": rss_before,
        "provenance": encoder.provenance,
    }


def case_features(seconds: int, threads: int, batch: int) -> dict:
    from pipeline.audio.encoders import build_encoder
    from pipeline.audio.features import clip_features

    _set_threads(threads)
    encoder = build_encoder("yamnet", batch_size=batch, num_threads=threads)
    clips = [(_noise(CLIP_SECONDS, seed), CLIP_SECONDS) for seed in range(seconds // CLIP_SECONDS)]
    rss_before = _peak_rss_mib()
    elapsed = _time(lambda: clip_features(clips, encoder))
    return {"audio_seconds": len(clips) * CLIP_SECONDS, "compute_seconds": elapsed, "rss_before_mib": rss_before}


def _run_case(queue, kind: str, kwargs: dict) -> None:
    try:
        result = {"frontend": case_frontend, "encoder": case_encoder, "features": case_features}[kind](**kwargs)
        result["peak_rss_mib"] = _peak_rss_mib()
        queue.put(result)
    except Exception as error:  # noqa: BLE001 - report the failing case and go on with the others
        queue.put({"error": f"{type(error).__name__}: {error}"})


def run_isolated(kind: str, **kwargs) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run_case, args=(queue, kind, kwargs))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=int, default=64, help="seconds of audio per batched case (default: %(default)s)"
    )
    parser.add_argument(
        "--single-seconds",
        type=int,
        default=16,
        help="seconds of audio for the one-example-at-a-time encoder cases (default: %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=64, help="examples per encoder call when batched")
    parser.add_argument("--encoders", nargs="+", default=["yamnet", "vggish"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default: %(default)s)")
    args = parser.parse_args(argv)

    # Inherited by the spawned case processes before they import numpy.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    cases: list[tuple[str, str, str, dict]] = [
        ("front end (log-mel)", "batched", "frontend", {"mode": "batched", "seconds": args.seconds}),
        ("front end (log-mel)", "one example", "frontend", {"mode": "single", "seconds": args.seconds}),
    ]
    for name in args.encoders:
        label = f"{name} encoder" + (" (random init)" if name == "vggish" else "")
        cases.append(
            (
                label,
                f"batch {args.batch}",
                "encoder",
                {"name": name, "mode": "batched", "seconds": args.seconds, "batch": args.batch},
            )
        )
        cases.append(
            (
                label,
                "one example",
                "encoder",
                {"name": name, "mode": "single", "seconds": args.single_seconds, "batch": 1},
            )
        )
    cases.append(
        (
            f"log-mel + yamnet, {CLIP_SECONDS} s clips",
            f"batch {args.batch}",
            "features",
            {"seconds": args.seconds, "batch": args.batch},
        )
    )

    rows = []
    for label, mode, kind, kwargs in cases:
        result = run_isolated(kind, threads=args.threads, **kwargs)
        if "error" not in result:
            result["audio_seconds_per_second"] = result["audio_seconds"] / result["compute_seconds"]
        rows.append({"case": label, "mode": mode, **result})
        print(f"  done: {label} / {mode}", file=sys.stderr)

    header = (
        f"{'case':<38} {'mode':<12} {'audio s':>8} {'compute s':>10} {'audio s / s':>12} "
        f"{'peak RSS MiB':>13} {'+ during run':>13}"
    )
    print(
        f"\nAudio features on {args.threads} thread(s), {platform.machine()}; peak RSS = whole case process "
        f"(imports + model), '+ during run' = growth while timing"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['case']:<38} {row['mode']:<12} ERROR {row['error']}")
            continue
        print(
            f"{row['case']:<38} {row['mode']:<12} {row['audio_seconds']:>8d} {row['compute_seconds']:>10.4f} "
            f"{row['audio_seconds_per_second']:>12.1f} {row['peak_rss_mib']:>13.0f} "
            f"{row['peak_rss_mib'] - row['rss_before_mib']:>13.0f}"
        )
    for row in rows:
        if "tracemalloc_peak_mib" in row:
            print(f"{row['case']} / {row['mode']}: numpy peak (tracemalloc) {row['tracemalloc_peak_mib']:.1f} MiB")
    import numpy
    import onnxruntime
    import torch

    report = {
        "threads": args.threads,
        "batch": args.batch,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
