"""``avs predict VIDEO --checkpoint CKPT --out OUT``: overlay video + per-second masks for any video."""

from __future__ import annotations

import argparse

import yaml

from pipeline.params import ParamsError, Size2
from stages.common import check_argument
from stages.evaluate import add_model_flags, model_flags
from train.predict import predict_video

# Seconds per model call: the window's frames go through the model as one batch (60 s at 224x224 is
# 9 MB of frames but several GB of activations for the larger models).
MAX_WINDOW = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="any video ffmpeg reads (any length: one prediction per second)")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a checkpoint written by `avs train` (model.pt), or an official COMBO model_final.pth",
    )
    parser.add_argument("--out", required=True, help="output folder (overlay.mp4, masks/, prediction.json)")
    parser.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold (binary models)")
    parser.add_argument("--window", type=int, default=5, help="seconds per model call")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="model input size (default: the checkpoint's train.inference_size)",
    )
    parser.add_argument(
        "--proposals",
        metavar="YAML",
        default=None,
        help="override recorded proposal settings, e.g. '{preset: fast}' (warns: differs from training); "
        "for an official COMBO checkpoint, '{checkpoint: swinl_only_sam_many2many.pth}'",
    )
    parser.add_argument(
        "--features",
        metavar="PARAMS_YAML",
        default=None,
        help="params file whose extract/audio/proposals sections give the features (default: the "
        "checkpoint's records; an official COMBO checkpoint has none: COMBO's published features, "
        "VGGish log-mel and Semantic-SAM maskiges)",
    )
    add_model_flags(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available, as evaluate)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.threshold < 1:
        raise ParamsError(f"--threshold must be in (0, 1), got {args.threshold}")
    if not 1 <= args.window <= MAX_WINDOW:
        raise ParamsError(f"--window must be in 1..{MAX_WINDOW} seconds, got {args.window}")
    if args.size is not None:
        check_argument("--size", args.size, Size2)  # the bounds of train.size, before any work
    override = yaml.safe_load(args.proposals) if args.proposals else None
    if override is not None and not isinstance(override, dict):
        raise ParamsError(f"--proposals must be a YAML mapping, got {args.proposals!r}")
    summary = predict_video(
        args.video,
        args.checkpoint,
        args.out,
        threshold=args.threshold,
        window=args.window,
        size=tuple(args.size) if args.size else None,
        proposals_override=override,
        progress=not args.no_progress,
        device=args.device,
        model_flags=model_flags(args),
        features_file=args.features,
    )
    print(f"predict {args.video}: {summary['seconds']} s -> {args.out}/overlay.mp4, {args.out}/masks/")
    return 0
