"""``avs evaluate``: AVSBench metrics of a checkpoint on cached test shards, the audio-shuffle and
negative-audio checks, strips of the worst and best videos, and the self-contained OUT/report.html."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.params import ParamsError
from stages.common import StageContext, add_common
from train.evaluate import EvalParams, evaluate
from train.official_combo import ModelFlags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, dataset=False)
    parser.add_argument("--checkpoint", help="checkpoint (default: {data.root}/runs/train/model.pt)")
    parser.add_argument("--out", help="output folder (default: {data.root}/runs/eval)")
    parser.add_argument("--metrics", help="also write the metrics JSON here (always: OUT/metrics.json)")
    parser.add_argument(
        "--train-log",
        help="the training run's dvclive folder, for the curves in "
        "OUT/report.html (default: CHECKPOINT's folder/log when it exists)",
    )
    parser.add_argument("--videos-per-batch", type=int, help="1 = COMBO protocol, 4 = AVSBench test.sh")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    add_model_flags(parser)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--model`` / ``--task`` / ``--num-classes``: what an official COMBO checkpoint (detectron2
    ``model_final.pth``) does not record; checked against the weights of any checkpoint."""
    parser.add_argument(
        "--model",
        default=None,
        help="registered model to build an official COMBO checkpoint as (default: read from its shapes: "
        "combo_r50 or combo_pvt_b5); must agree with any checkpoint",
    )
    parser.add_argument(
        "--task", choices=("binary", "semantic"), default=None, help="must agree with the checkpoint's class head"
    )
    parser.add_argument(
        "--num-classes", type=int, default=None, help="classes with background (2, or 71 for AVSS): must agree"
    )


def model_flags(args: argparse.Namespace) -> ModelFlags | None:
    """The model flags given on the command line (None when none is)."""
    if args.model is not None:
        from pipeline.registry import UnknownNameError
        from train.models.registry import model_spec

        try:
            model_spec(args.model)
        except UnknownNameError as exc:
            raise ParamsError(f"--model: {exc}") from None
    flags = ModelFlags(args.model, args.task, args.num_classes)
    return None if flags == ModelFlags() else flags


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    cfg = ctx.section(EvalParams, "evaluate", videos_per_batch=args.videos_per_batch)
    checkpoint = Path(args.checkpoint) if args.checkpoint else ctx.data_root / "runs" / "train" / "model.pt"
    out = Path(args.out) if args.out else ctx.data_root / "runs" / "eval"
    train_log = Path(args.train_log) if args.train_log else checkpoint.parent / "log"
    if args.train_log and not train_log.is_dir():
        raise FileNotFoundError(
            f"{train_log}: no training log folder (--train-log: the dvclive folder of `avs train --log`)"
        )
    metrics = evaluate(
        checkpoint,
        cfg,
        str(ctx.data_root),
        ctx.data.shards,
        out,
        metrics_path=args.metrics,
        train_log=train_log if train_log.is_dir() else None,
        progress=ctx.progress,
        device=args.device,
        model_flags=model_flags(args),
    )
    summary = {
        name: {k: round(v, 4) for k, v in m.items() if isinstance(v, float)}
        for name, m in metrics.items()
        if isinstance(m, dict)
    }
    print(f"evaluate {checkpoint}: {json.dumps(summary)}")
    print(f"report: {out / 'report.html'}")
    if not any(isinstance(m, dict) and m.get("num_videos") for m in metrics.values()):
        print(
            f"avs evaluate: nothing was scored: no '{cfg.split}' clip with all features in {cfg.datasets}",
            file=sys.stderr,
        )
        return 1
    return 0
