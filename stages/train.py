"""``avs train``: train a registered model on the cached feature shards (never recomputes features)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import StageContext, add_common
from train.loop import TrainParams, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, dataset=False)
    parser.add_argument("--out", default=None, help="run folder (default: {data.root}/runs/train)")
    parser.add_argument(
        "--log", default=None, help="dvclive folder of the per-step curves, for dvc plots (default: RUN/log)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from the latest checkpoint in the run folder, or from the given file",
    )
    parser.add_argument("--max-steps", type=int, help="override train.max_steps")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    cfg = ctx.section(TrainParams, "train", max_steps=args.max_steps)
    out = Path(args.out) if args.out else ctx.data_root / "runs" / "train"
    result = train(
        cfg, str(ctx.data_root), ctx.data.shards, out, resume=args.resume, progress=ctx.progress, log_path=args.log
    )
    losses = result["losses"]
    if losses:
        print(
            f"train {result['model']}: {result['steps']} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}; {result['final']}"
        )
    return 0
