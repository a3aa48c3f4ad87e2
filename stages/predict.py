"""``avs predict VIDEO --checkpoint CKPT --out OUT``: overlay video + per-second masks for any video."""

from __future__ import annotations

import argparse

from train.predict import predict_video


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="any video ffmpeg reads (any length: one prediction per second)")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `avs train` (model.pt)")
    parser.add_argument("--out", required=True, help="output folder (overlay.mp4, masks/, prediction.json)")
    parser.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold (binary models)")
    parser.add_argument("--window", type=int, default=5, help="seconds per model call")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="model input size (default: the training size; see evaluate.size in params.yaml)")


def run(args: argparse.Namespace) -> int:
    summary = predict_video(args.video, args.checkpoint, args.out, threshold=args.threshold, window=args.window,
                            size=tuple(args.size) if args.size else None)
    print(f"predict {args.video}: {summary['seconds']} s -> {args.out}/overlay.mp4, {args.out}/masks/")
    return 0
