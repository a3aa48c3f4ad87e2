"""Proposal presets against the reference, on a tuning half and a held-out half of real frames.

Frames: benchmarks/proposal_frames.py (24 frames of packaged sample media at 224x224, 12 tuning,
12 held-out). Reference: ``SamAutomaticMaskGenerator(points_per_side=32)`` on the official MobileSAM;
its masks are committed under benchmarks/results/proposal_reference/ (proposal_reference.py).

One run reports, per preset and per half: recall of the reference masks (a reference mask is
recovered when one of ours has IoU >= 0.8; median over frames, worst frame, pooled), CPU seconds
per frame and the speed-up against the reference's CPU time, measured side by side in this run
(``--retime-reference K``: ``SamAutomaticMaskGenerator`` is re-run on K held-out frames, its masks
also checked against the committed ones). Both generators run with one torch thread; CPU seconds
are the fair measure on a shared machine. Writes benchmarks/results/bench_proposals.json.

Recall for presets at a 1024 encoder input can also be taken by replay (``--replay``): every grid
point's masks were recorded once (results/cache/proposal_candidates/, by proposal_reference.py) and
the generator's own round logic (``FastMaskGenerator.run_rounds``) runs on them without the decoder,
so a strategy is evaluated on all frames in milliseconds. ``--sweep`` replays a grid of settings on
the tuning half (how the presets were chosen).

    python benchmarks/bench_proposals.py                          # presets on all frames + 1 reference re-time
    python benchmarks/bench_proposals.py --time-frames 4 --replay # recall by replay, timings on 4 frames/half
    python benchmarks/bench_proposals.py --sweep                  # tuning-half replay sweep only
"""

from __future__ import annotations

import argparse
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
from _bench_common import write_json  # noqa: E402
from proposal_frames import FRAMES, build_frame, frame_digest  # noqa: E402
from proposal_reference import (  # noqa: E402
    REFERENCE_SETTINGS,
    compute_sam,
    load_candidates,
    read_masks,
    reference_path,
    sam_model,
    select_points,
)

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RECALL_IOU = 0.8
SMALL_AREA = 100  # pixels (0.2% of a 224x224 frame), for the secondary recall
SWEEP = (
    [{"coarse_levels": c} for c in (1, 2, 3)]  # uncovered points only (the old quality: 1)
    + [{"coarse_levels": 1, "cover_max_area": a} for a in (0.1, 0.02)]
    + [{"coarse_levels": c, "distinct_similarity": t} for c in (2, 3) for t in (0.9, 0.93, 0.95, 0.96, 0.97)]
    + [{"coarse_levels": 3, "distinct_similarity": t} for t in (0.8, 0.85)]
    + [{"coarse_levels": 4, "distinct_similarity": t} for t in (0.9, 0.95)]
)


# ---------------------------------------------------------------------------------- compare
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between bool masks a [R,H,W] and b [K,H,W] -> float [R,K]."""
    import torch

    x = torch.from_numpy(a.reshape(len(a), -1)).float()
    y = torch.from_numpy(b.reshape(len(b), -1)).float()
    inter = x @ y.T
    union = x.sum(1)[:, None] + y.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


def matched(reference: np.ndarray, ours: np.ndarray, iou: float = RECALL_IOU) -> np.ndarray:
    """bool [R]: which reference masks one of ours matches with IoU >= iou."""
    if len(reference) == 0 or len(ours) == 0:
        return np.zeros(len(reference), bool)
    return iou_matrix(reference, ours).max(1) >= iou


def recall_row(reference: np.ndarray, ours: np.ndarray) -> dict:
    hit = matched(reference, ours)
    big = reference.reshape(len(reference), -1).sum(1) >= SMALL_AREA
    return {
        "masks": int(len(ours)),
        "reference_masks": int(len(reference)),
        "matched": int(hit.sum()),
        "recall": float(hit.mean()) if len(hit) else 1.0,
        "reference_masks_ge_100px": int(big.sum()),
        "matched_ge_100px": int((hit & big).sum()),
    }


# ----------------------------------------------------------------------------------- frames
def load_frames(opencv_data: str | None, names: list[str] | None) -> list[dict]:
    """Every frame with its committed reference masks; a clear error when one is missing or stale."""
    frames = []
    for spec in FRAMES:
        if names and spec.name not in names:
            continue
        frame = build_frame(spec, opencv_data)
        path = reference_path(spec.name)
        if not path.exists():
            print(f"skipping {spec.name}: no reference masks yet ({path.name}; run proposal_reference.py)")
            continue
        masks, _, meta = read_masks(path)
        if meta["digest"] != frame_digest(frame):
            raise SystemExit(
                f"{spec.name}: frame decodes differently from the one the reference was computed "
                f"on (digest {frame_digest(frame)} != {meta['digest']}): other package versions?"
            )
        frames.append({"spec": spec, "frame": frame, "reference": masks, "reference_meta": meta})
    return frames


# ------------------------------------------------------------------------------------ timed runs
def preset_backend(preset: str, overrides: dict | None = None):
    from pipeline.proposals.backends import build_backend
    from pipeline.proposals.config import ProposalParams

    return build_backend("mobile_sam", ProposalParams(preset=preset, generator=overrides or {}))


def run_timed(name: str, backend, frames: list[dict]) -> list[dict]:
    """Run a backend on frames (real decoder), timing each: rows of recall + cpu_s/wall_s."""
    if not frames:
        return []
    backend.propose(frames[0]["frame"])  # warm-up (allocator, operators) outside the timings
    rows = []
    for item in frames:
        start, start_cpu = time.perf_counter(), time.process_time()
        proposals = backend.propose(item["frame"])
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        rows.append(
            {
                "frame": item["spec"].name,
                "split": item["spec"].split,
                "cpu_s": cpu,
                "wall_s": wall,
                "prompts": int(getattr(backend.generator, "last_prompts", -1)),
                "timed": True,
                **recall_row(item["reference"], proposals.masks),
            }
        )
        print(
            f"  {name:<10} {rows[-1]['frame']:<12} cpu {cpu:6.1f}s prompts {rows[-1]['prompts']:4d} "
            f"recall {rows[-1]['recall']:.3f}",
            flush=True,
        )
    return rows


_EMBEDDINGS: dict[str, tuple] = {}  # frame name -> (embedding, valid_hw) at a 1024 input, for replays


def frame_embedding(generator, item: dict) -> tuple:
    """The frame's image embedding (and valid_hw) at the generator's 1024 input, computed once per run."""
    name = item["spec"].name
    if name not in _EMBEDDINGS:
        _EMBEDDINGS[name] = generator.encode(item["frame"])
    return _EMBEDDINGS[name]


def replay_rows(generator, frames: list[dict]) -> list[dict]:
    """Recall and prompts of ``generator``'s settings by replay on recorded per-point masks."""
    import torch

    rows = []
    for item in frames:
        shape = item["frame"].shape[:2]
        cached = load_candidates(item["spec"].name, item["reference_meta"]["digest"], shape)
        if cached is None:
            continue
        table = (torch.from_numpy(cached[0]), torch.from_numpy(cached[1]))
        points = torch.from_numpy(cached[2])
        grid = generator.grid_points(shape)
        similarity = None
        if generator.settings.distinct_similarity > 0:
            embedding, valid_hw = frame_embedding(generator, item)
            similarity = generator.point_similarity(embedding, grid, valid_hw, shape)
        masks, scores = generator.run_rounds(
            lambda idx, table=table, points=points: select_points(table, points, idx), grid, shape, similarity
        )
        ours, _ = generator._finish(masks, scores)
        rows.append(
            {
                "frame": item["spec"].name,
                "split": item["spec"].split,
                "prompts": generator.last_prompts,
                "timed": False,
                **recall_row(item["reference"], ours),
            }
        )
    return rows


def retime_reference(frames: list[dict]) -> list[dict]:
    """SamAutomaticMaskGenerator itself on these frames, now: CPU time side by side with ours, and
    how its masks compare with the committed reference masks (both directions)."""
    model = sam_model()
    rows = []
    for item in frames:
        meta, sam_masks = compute_sam(item["spec"], item["frame"], model, write=False)
        committed = item["reference"]
        same = (iou_matrix(sam_masks, committed) >= 0.99).any(1) if len(sam_masks) and len(committed) else []
        rows.append(
            {
                "frame": item["spec"].name,
                "cpu_s": meta["cpu_s"],
                "wall_s": meta["wall_s"],
                "sam_masks": int(len(sam_masks)),
                "committed_masks": int(len(committed)),
                "sam_masks_in_committed_iou_0.99": int(np.sum(same)),
                "committed_recall_of_sam": recall_row(sam_masks, committed)["recall"],
                "sam_recall_of_committed": recall_row(committed, sam_masks)["recall"],
            }
        )
        print(f"  reference  {rows[-1]}", flush=True)
    return rows


# ---------------------------------------------------------------------------------- summaries
def summarise(rows: list[dict], reference_cpu_s: float | None) -> dict:
    if not rows:
        return {}
    recalls = np.array([r["recall"] for r in rows])
    worst = rows[int(np.argmin(recalls))]
    out = {
        "frames": len(rows),
        "recall_median": float(np.median(recalls)),
        "recall_mean": float(recalls.mean()),
        "recall_worst": float(recalls.min()),
        "worst_frame": worst["frame"],
        "recall_pooled": sum(r["matched"] for r in rows) / max(1, sum(r["reference_masks"] for r in rows)),
        "recall_pooled_ge_100px": (
            sum(r["matched_ge_100px"] for r in rows) / max(1, sum(r["reference_masks_ge_100px"] for r in rows))
        ),
        "prompts_median": float(np.median([r["prompts"] for r in rows])),
    }
    timed = [r for r in rows if r.get("timed")]
    if timed:
        cpu = np.array([r["cpu_s"] for r in timed])
        out |= {"timed_frames": len(timed), "cpu_s_median": float(np.median(cpu)), "cpu_s_mean": float(cpu.mean())}
        if reference_cpu_s:
            out["speedup_cpu_median"] = float(np.median(reference_cpu_s / cpu))
            out["speedup_cpu_slowest_frame"] = float(reference_cpu_s / cpu.max())
    return out


def cost_model(rows: list[dict]) -> tuple[float, float] | None:
    """Least-squares CPU s/frame = a + b * prompts over timed rows (one encoder size), or None."""
    timed = [r for r in rows if r.get("timed")]
    prompts = np.array([r["prompts"] for r in timed], float)
    if len(timed) < 2 or np.ptp(prompts) == 0:
        return None
    b, a = np.polyfit(prompts, [r["cpu_s"] for r in timed], 1)
    return float(a), float(b)


def sweep(frames: list[dict], model) -> list[dict]:
    """Replay every SWEEP setting (over the reference preset, 1024 input) on the tuning half: recall and
    prompts per setting."""
    from pipeline.proposals.config import PRESETS
    from pipeline.proposals.generator import FastMaskGenerator, GeneratorSettings

    tuning = [f for f in frames if f["spec"].split == "tuning"]
    out = []
    for setting in SWEEP:
        generator = FastMaskGenerator(model, GeneratorSettings(**{**PRESETS["reference"], **setting}))
        rows = replay_rows(generator, tuning)
        out.append({"setting": setting, **summarise(rows, None)})
        print(
            f"  sweep {setting}: recall median {out[-1].get('recall_median', float('nan')):.3f} worst "
            f"{out[-1].get('recall_worst', float('nan')):.3f} pooled {out[-1].get('recall_pooled', float('nan')):.3f}"
            f" prompts {out[-1].get('prompts_median', float('nan')):.0f}",
            flush=True,
        )
    return out


def run_preset(preset: str, frames: list[dict], time_frames: int, replay: bool) -> dict:
    """Timed runs on ``time_frames`` frames of each half (spread over it); the others by replay (when the
    preset's encoder input is 1024, the size the per-point masks were recorded at) or timed too."""
    from pipeline.proposals.config import ProposalParams

    params = ProposalParams(preset=preset)
    backend = preset_backend(preset)
    timed, rest = [], []
    for split in ("tuning", "heldout"):
        half = [f for f in frames if f["spec"].split == split]
        # Spread over the half (the list mixes plain and cluttered frames), not its first frames.
        step = max(1, -(-len(half) // time_frames)) if time_frames else len(half) + 1
        chosen = set(range(0, len(half), step)[:time_frames])
        timed += [f for i, f in enumerate(half) if i in chosen]
        rest += [f for i, f in enumerate(half) if i not in chosen]
    can_replay = replay and params.effective_encoder_size() == 1024
    rows = run_timed(preset, backend, timed)
    if can_replay:  # the replay must agree with the real decoder where both ran
        for row, again in zip(rows, replay_rows(backend.generator, timed)):
            row["replay_recall"], row["replay_prompts"] = again["recall"], again["prompts"]
    rows += replay_rows(backend.generator, rest) if can_replay else run_timed(preset, backend, rest)
    return {"preset": preset, "settings": params.model_settings(), "frames": rows}


# AVSBench frames per subset and split (shared notes: S4 3452/740/740 videos x 5 frames, MS3 296/64/64
# x 5; AVSS = v1s (the S4 videos) + v1m (the MS3 videos) x 5 frames + v2 4750/500/750 x 10 frames).
AVSBENCH_FRAMES = {
    "S4": {"train": 3452 * 5, "val": 740 * 5, "test": 740 * 5},
    "MS3": {"train": 296 * 5, "val": 64 * 5, "test": 64 * 5},
    "AVSS": {
        "train": (3452 + 296) * 5 + 4750 * 10,
        "val": (740 + 64) * 5 + 500 * 10,
        "test": (740 + 64) * 5 + 750 * 10,
    },
}


def dataset_cost(cpu_s_per_frame: float, workers: int = 32) -> dict:
    """Proposal-stage hours per AVSBench subset on 1 core and on ``workers`` single-thread dask workers
    (frames are independent: ideal scaling assumed, same per-core speed as measured here)."""
    out = {}
    for subset, splits in AVSBENCH_FRAMES.items():
        frames = sum(splits.values())
        hours = frames * cpu_s_per_frame / 3600
        out[subset] = {"frames": frames, "hours_1_core": hours, f"hours_{workers}_workers": hours / workers}
    return out


def print_table(results: list[dict], reference_cpu_s: float | None, same_run: bool) -> None:
    print(
        f"\nreference: SamAutomaticMaskGenerator(points_per_side=32), {reference_cpu_s or float('nan'):.1f} "
        f"CPU s/frame ({'re-timed in this run' if same_run else 'given with --reference-cpu-s'})"
    )
    print(
        f"{'preset':<9} {'half':<8} {'n':>3} {'recall med':>10} {'worst':>14} {'pooled':>7} {'>=100px':>7} "
        f"{'prompts':>7} {'cpu s':>6} {'speed-up':>8}"
    )
    for result in results:
        for split, s in result["summary"].items():
            if not s:
                continue
            print(
                f"{result['preset']:<9} {split:<8} {s['frames']:>3} {s['recall_median']:>10.3f} "
                f"{s['recall_worst']:>6.3f} {s['worst_frame']:<7.7} {s['recall_pooled']:>7.3f} "
                f"{s['recall_pooled_ge_100px']:>7.3f} {s['prompts_median']:>7.0f} "
                f"{s.get('cpu_s_median', float('nan')):>6.1f} {s.get('speedup_cpu_median', float('nan')):>7.1f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["quality", "fast", "demo"])
    parser.add_argument("--frames", nargs="*", default=None, help="frame names (default: all with a reference)")
    parser.add_argument(
        "--time-frames",
        type=int,
        default=12,
        metavar="N",
        help="timed (real decoder) frames per half; the rest by replay with --replay",
    )
    parser.add_argument("--replay", action="store_true", help="recall of untimed frames by replay (1024 input)")
    parser.add_argument(
        "--retime-reference",
        type=int,
        default=1,
        metavar="K",
        help="re-run SamAutomaticMaskGenerator on K held-out frames in this run (~6 CPU-min each)",
    )
    parser.add_argument(
        "--reference-cpu-s",
        type=float,
        default=None,
        help="with --retime-reference 0: the reference's CPU s/frame from an earlier run",
    )
    parser.add_argument("--sweep", action="store_true", help="replay the SWEEP settings on the tuning half first")
    parser.add_argument("--sweep-only", action="store_true")
    parser.add_argument("--opencv-data", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both generators")
    parser.add_argument("--out", default=str(RESULTS_DIR / "bench_proposals.json"))
    args = parser.parse_args(argv)

    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    frames = load_frames(args.opencv_data, args.frames)
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "load_average": os.getloadavg(),
        },
        "reference": {"generator": "mobile_sam.SamAutomaticMaskGenerator", **REFERENCE_SETTINGS},
        "recall_iou": RECALL_IOU,
        "frames": {f["spec"].name: f["spec"].split for f in frames},
    }
    if args.sweep or args.sweep_only:
        report["sweep"] = sweep(frames, preset_backend("quality").generator.model)
        if args.sweep_only:
            write_json(Path(args.out), report)
            return 0
    heldout = [f for f in frames if f["spec"].split == "heldout"]
    report["reference_retimed"] = retime_reference(heldout[: args.retime_reference])
    reference_cpu_s = (
        float(np.median([r["cpu_s"] for r in report["reference_retimed"]]))
        if report["reference_retimed"]
        else args.reference_cpu_s
    )
    report["reference_cpu_s"] = reference_cpu_s
    # The committed masks came from our `reference` preset (same masks); its CPU time per frame was
    # recorded then (same machine, other load): the speed of the exact preset.
    recorded = [f["reference_meta"]["cpu_s"] for f in frames]
    report["reference_preset_cpu_s_median_recorded"] = float(np.median(recorded))
    report["reference_cpu_s_same_run"] = bool(report["reference_retimed"])
    results = []
    for preset in args.presets:
        result = run_preset(preset, frames, args.time_frames, args.replay)
        result["summary"] = {
            split: summarise([r for r in result["frames"] if r["split"] == split], reference_cpu_s)
            for split in ("tuning", "heldout")
        }
        result["cost_model_cpu_s"] = cost_model(result["frames"])
        results.append(result)
    report["results"] = results
    print_table(results, reference_cpu_s, report["reference_cpu_s_same_run"])
    print(
        f"reference preset (exact): {np.median(recorded):.1f} CPU s/frame recorded by proposal_reference.py "
        f"-> {reference_cpu_s / np.median(recorded) if reference_cpu_s else float('nan'):.1f}x"
    )
    print("\nAVSBench proposal-stage cost (held-out median CPU s/frame; 1 core | 32 single-thread dask workers)")
    for result in results:
        cpu = result["summary"]["heldout"].get("cpu_s_median")
        if cpu is None:
            continue
        result["avsbench_cost"] = dataset_cost(cpu)
        cells = "  ".join(
            f"{k}: {v['hours_1_core']:.1f} h | {v['hours_32_workers']:.2f} h"
            for k, v in result["avsbench_cost"].items()
        )
        print(f"  {result['preset']:<9} {cpu:5.1f} s/frame  {cells}")
    write_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
