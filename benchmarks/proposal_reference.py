"""Reference masks of the proposal frame set (benchmarks/proposal_frames.py), computed once, committed.

The reference is ``SamAutomaticMaskGenerator(points_per_side=32)`` on the official MobileSAM, every
other setting at its default. It costs ~6 CPU-minutes per 224x224 frame on one thread, so its masks
are computed with our ``reference`` preset (``coarse_levels: 0``: the same 1024 prompts, the same
image resize, logits, thresholds and box NMS; pipeline/proposals/generator.py), ~6x cheaper, and
checked against ``SamAutomaticMaskGenerator`` itself on frames of the set (``--check-sam``: its
masks are stored beside ours and compared mask by mask, and its CPU time is recorded).

Outputs (one file per frame, written atomically as each frame finishes; reruns skip done frames):
- ``benchmarks/results/proposal_reference/<name>.json.gz`` (committed): frame digest, settings,
  CPU time, and every reference mask as COCO-style uncompressed RLE (column-major run lengths,
  starting with a run of 0s) with its predicted IoU;
- ``benchmarks/results/cache/proposal_candidates/<name>-<digest>.npz`` (not committed): every grid
  point's filtered masks before NMS, so presets can be replayed on the tuning frames without the
  decoder (``bench_proposals.py --replay``).

    python benchmarks/proposal_reference.py                       # all 24 frames (~1 CPU-minute each)
    python benchmarks/proposal_reference.py --check-sam rocket    # + SamAutomaticMaskGenerator on a frame
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from proposal_frames import FRAMES, build_frame, frame_digest  # noqa: E402

from pipeline.atomic import atomic_path  # noqa: E402

REFERENCE_DIR = REPO_ROOT / "benchmarks" / "results" / "proposal_reference"
CANDIDATE_CACHE = REPO_ROOT / "benchmarks" / "results" / "cache" / "proposal_candidates"
REFERENCE_SETTINGS = {"points_per_side": 32}  # every other SamAutomaticMaskGenerator setting at its default


# ------------------------------------------------------------------------------------- RLE
def rle_encode(mask: np.ndarray) -> list[int]:
    """COCO-style uncompressed RLE of a bool [H,W] mask: run lengths in column-major order,
    the first run counting 0s (possibly 0 long)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def rle_decode(counts: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`rle_encode`: bool [H,W]."""
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"RLE covers {flat.size} pixels, expected {shape[0] * shape[1]}")
    return flat.reshape(shape, order="F")


def write_masks(path: Path, masks: np.ndarray, scores: np.ndarray, meta: dict) -> None:
    record = {
        **meta,
        "shape": list(masks.shape[1:]) if len(masks) else meta.get("shape"),
        "masks": [
            {"counts": rle_encode(m), "score": round(float(s), 5), "area": int(m.sum())} for m, s in zip(masks, scores)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(gzip.compress(json.dumps(record, separators=(",", ":")).encode(), mtime=0))


def read_masks(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(masks bool [K,H,W], scores float32 [K], the rest of the record) of a file from write_masks."""
    record = json.loads(gzip.decompress(path.read_bytes()))
    shape = tuple(record["shape"])
    entries = record.pop("masks")
    masks = np.stack([rle_decode(e["counts"], shape) for e in entries]) if entries else np.zeros((0, *shape), bool)
    return masks, np.array([e["score"] for e in entries], np.float32), record


def reference_path(name: str, kind: str = "reference") -> Path:
    return REFERENCE_DIR / (f"{name}.json.gz" if kind == "reference" else f"{name}.{kind}.json.gz")


def candidate_path(name: str, digest: str) -> Path:
    return CANDIDATE_CACHE / f"{name}-{digest}.npz"


def load_candidates(name: str, digest: str, shape: tuple[int, int]):
    """Per-point candidates (masks bool [K,H,W], scores [K], grid index [K]) or None if not cached."""
    path = candidate_path(name, digest)
    if not path.exists():
        return None
    with np.load(path) as z:
        masks = np.unpackbits(z["packed"], axis=-1, count=shape[1]).astype(bool)
        return masks.reshape(-1, *shape), z["scores"], z["points"]


# -------------------------------------------------------------------------------- compute
def reference_generator(threads: int = 1):
    import torch

    from pipeline.proposals.backends import build_backend
    from pipeline.proposals.config import ProposalParams

    torch.set_num_threads(threads)
    return build_backend("mobile_sam", ProposalParams(preset="reference")).generator


def compute_reference(spec, frame: np.ndarray, generator) -> dict:
    """Every grid point decoded once (cached), the NMS over all of them written as the reference."""
    import torch

    digest = frame_digest(frame)
    start_cpu, start = time.process_time(), time.perf_counter()
    masks, scores, points = generator.point_candidates(frame)
    cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start
    CANDIDATE_CACHE.mkdir(parents=True, exist_ok=True)
    packed = np.packbits(masks.numpy(), axis=-1)
    with atomic_path(candidate_path(spec.name, digest), suffix=".npz") as tmp:
        np.savez_compressed(tmp, packed=packed, scores=scores.numpy(), points=points.numpy())
    table = (masks, scores)
    kept_masks, kept_scores = generator.run_rounds(
        lambda idx: select_points(table, points, idx), generator.grid_points(frame.shape[:2]), frame.shape[:2]
    )
    final_masks, final_scores = generator._finish(kept_masks, kept_scores)
    meta = {
        "frame": spec.name,
        "split": spec.split,
        "digest": digest,
        "shape": list(frame.shape[:2]),
        "generator": "pipeline FastMaskGenerator, preset reference (SamAutomaticMaskGenerator-equivalent)",
        "reference_settings": REFERENCE_SETTINGS,
        "candidates": int(len(scores)),
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "torch_threads": torch.get_num_threads(),
    }
    write_masks(reference_path(spec.name), final_masks, final_scores, meta)
    return meta | {"masks": int(len(final_masks))}


def select_points(table: tuple, points, indices: np.ndarray) -> tuple:
    """The recorded candidates (masks, scores) of the grid points ``indices``."""
    import torch

    chosen = torch.from_numpy(np.isin(points.numpy(), indices))
    return table[0][chosen], table[1][chosen]


def compute_sam(spec, frame: np.ndarray, model, write: bool = True) -> tuple[dict, np.ndarray]:
    """SamAutomaticMaskGenerator itself on one frame: (record, masks bool [K,H,W]); with ``write``
    the masks are stored as ``<name>.sam.json.gz``."""
    import torch
    from mobile_sam import SamAutomaticMaskGenerator

    generator = SamAutomaticMaskGenerator(model, **REFERENCE_SETTINGS)
    start_cpu, start = time.process_time(), time.perf_counter()
    records = generator.generate(frame)
    cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start
    masks = np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, *frame.shape[:2]), bool)
    scores = np.array([r["predicted_iou"] for r in records], np.float32)
    meta = {
        "frame": spec.name,
        "split": spec.split,
        "digest": frame_digest(frame),
        "shape": list(frame.shape[:2]),
        "generator": "mobile_sam.SamAutomaticMaskGenerator",
        "reference_settings": REFERENCE_SETTINGS,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "torch_threads": torch.get_num_threads(),
    }
    if write:
        write_masks(reference_path(spec.name, "sam"), masks, scores, meta)
    return meta | {"masks": int(len(masks))}, masks


def sam_model():
    """The official MobileSAM as segment-anything code builds it (the reference's own model)."""
    from mobile_sam import sam_model_registry

    from pipeline.proposals.sam_models import bundled_mobile_sam_checkpoint

    return sam_model_registry["vit_t"](checkpoint=str(bundled_mobile_sam_checkpoint())).eval()


def is_done(name: str, digest: str, kind: str = "reference") -> bool:
    path = reference_path(name, kind)
    if not path.exists():
        return False
    record = json.loads(gzip.decompress(path.read_bytes()))
    return record.get("digest") == digest and (kind != "reference" or candidate_path(name, digest).exists())


def interleaved(specs) -> list:
    """Tuning and held-out frames alternately: a run cut short still leaves both halves balanced."""
    tuning = [s for s in specs if s.split == "tuning"]
    heldout = [s for s in specs if s.split != "tuning"]
    out = []
    for pair in zip(tuning, heldout):
        out.extend(pair)
    return out + tuning[len(heldout) :] + heldout[len(tuning) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--frames",
        nargs="*",
        default=None,
        help="frame names, in this order (default: all, tuning and held-out alternately)",
    )
    parser.add_argument(
        "--check-sam",
        nargs="*",
        default=[],
        metavar="NAME",
        help="also run SamAutomaticMaskGenerator on these frames (~6 CPU-min each)",
    )
    parser.add_argument("--opencv-data", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    generator = reference_generator(args.threads)
    by_name = {s.name: s for s in FRAMES}
    unknown = sorted(set(args.frames or []) - set(by_name))
    if unknown:
        raise SystemExit(f"unknown frame names {unknown}; known: {sorted(by_name)}")
    specs = interleaved(FRAMES) if args.frames is None else [by_name[n] for n in args.frames]
    for spec in specs:
        frame = build_frame(spec, args.opencv_data)
        if not is_done(spec.name, frame_digest(frame)):
            print(f"reference {spec.name}: {compute_reference(spec, frame, generator)}", flush=True)
        if spec.name in args.check_sam and not is_done(spec.name, frame_digest(frame), "sam"):
            print(f"sam {spec.name}: {compute_sam(spec, frame, sam_model())[0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
