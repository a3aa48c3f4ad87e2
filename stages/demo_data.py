"""``avs demo-data``: write the seeded synthetic demo dataset (S4-, MS3- and AVSS-like) as real mp4s."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.demo import DemoConfig, generate_demo
from pipeline.parallel import available_cores
from pipeline.params import from_section, section
from stages.common import StageContext, add_common



def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, dataset=False)
    parser.add_argument("--out", help="output folder (default: demo.out in params.yaml)")
    parser.add_argument("--seed", type=int, help="random seed (overrides demo.seed)")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    demo = dict(section(ctx.params, "demo"))
    out = Path(args.out or demo.pop("out", "data/raw/demo"))
    demo.pop("out", None)
    flavours = tuple(demo.pop("flavours", ("s4", "ms3", "avss")))
    if args.seed is not None:
        demo["seed"] = args.seed
    cfg = from_section(DemoConfig, demo, "demo")
    summary = generate_demo(out, cfg, flavours=flavours, progress=ctx.progress, workers=available_cores())
    print(f"demo-data -> {out}: {summary}")
    return 0
