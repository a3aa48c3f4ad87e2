"""``avs train``: train a registered model on the cached feature shards (never recomputes features)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import ParamsError
from stages.common import StageContext, add_common, label_formats
from train.loop import ResolvedTrainParams, TrainParams, resolve_train_params, train


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


# The ground truth each task trains on (the extract shards record each video's label_format).
TASK_LABELS = {"binary": "binary_png", "semantic": "voc_rgb"}


def check_task(cfg: ResolvedTrainParams, data_root: Path, shards: list[int]) -> None:
    """Refuse, before the run folder exists, a ``train.task`` whose labels the datasets do not have
    (semantic on S4/MS3 masks would train 71 classes on {0,1}; binary on AVSS would read class ids as 0/1)."""
    for dataset, formats in label_formats(data_root, cfg.datasets, shards, cfg.split).items():
        other = sorted(formats - {TASK_LABELS[cfg.task], "none"})
        if other:
            fits = [task for task, fmt in TASK_LABELS.items() if fmt in other]
            raise ParamsError(
                f"train.task: {cfg.task!r} needs {TASK_LABELS[cfg.task]} labels, but dataset {dataset} has {other}"
                + (f" (task: {fits[0]})" if fits else "")
            )


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    # Resolved once, here: the task check needs the task a null key resolves to, and train() takes them as they are.
    cfg = resolve_train_params(ctx.section(TrainParams, "train", max_steps=args.max_steps))
    check_task(cfg, ctx.data_root, ctx.data.shards)
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
