"""``avs demo-data``: write the seeded synthetic demo dataset as the AVSBench release trees (+ mp4s)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.demo import FLAVOURS, DemoConfig, generate_demo
from pipeline.parallel import available_cores
from pipeline.params import from_section, section
from stages.common import StageContext, add_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, dataset=False)
    parser.add_argument("--out", help="output folder (default: demo.out in params.yaml)")
    parser.add_argument("--seed", type=int, help="random seed (overrides demo.seed)")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    demo = section(ctx.params, "demo")
    out = Path(args.out or demo.get("out") or "data/raw/demo")
    flavours = tuple(demo.get("flavours") or FLAVOURS)
    fields = {k: v for k, v in demo.items() if k not in ("out", "flavours")}  # the rest is a DemoConfig
    if args.seed is not None:
        fields["seed"] = args.seed
    cfg = from_section(DemoConfig, fields, "demo")
    summary = generate_demo(out, cfg, flavours=flavours, progress=ctx.progress, workers=available_cores())
    print(f"demo-data -> {out}: {summary['num_videos']} videos, {summary['num_label_images']} label images "
          f"in {summary['elapsed_s']} s (release trees: {', '.join(sorted(summary['counts']))})")
    return 0
