"""``avs demo-data``: write the seeded synthetic demo dataset as the AVSBench release trees (+ mp4s)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from pipeline.demo import FLAVOURS, DemoConfig, generate_demo
from pipeline.parallel import available_cores
from stages.common import StageContext, add_common

Flavour = Literal["s4", "ms3", "avss"]
# Videos per flavour: each is an mp4 plus 5-10 frame and label PNGs (about 0.2 MB at 224x224, a second of
# generation on one core), so 10000 is about 2 GB and hours of work: more is a typo, not a demo.
MAX_DEMO_VIDEOS = 10_000


@dataclass
class DemoStageParams(DemoConfig):
    """The ``demo`` section: what the dataset holds (``DemoConfig``), where it goes and which flavours."""

    out: str = "data/raw/demo"
    flavours: tuple[Flavour, ...] = FLAVOURS

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("s4_videos", "ms3_videos", "avss_videos"):
            if sum(getattr(self, name)) > MAX_DEMO_VIDEOS:
                raise ValueError(f"demo.{name} must total <= {MAX_DEMO_VIDEOS} videos, got {list(getattr(self, name))}")

    def dataset_config(self) -> DemoConfig:
        """The ``DemoConfig`` part alone (recorded in the stamps, so the stage's own keys stay out of them)."""
        return DemoConfig(**{f.name: getattr(self, f.name) for f in fields(DemoConfig)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, dataset=False)
    parser.add_argument("--out", help="output folder (default: demo.out in params.yaml)")
    parser.add_argument("--seed", type=int, help="random seed (overrides demo.seed)")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    params = ctx.section(DemoStageParams, "demo", out=args.out, seed=args.seed)
    out = Path(params.out)
    summary = generate_demo(
        out, params.dataset_config(), flavours=tuple(params.flavours), progress=ctx.progress, workers=available_cores()
    )
    print(
        f"demo-data -> {out}: {summary['num_videos']} videos, {summary['num_label_images']} label images "
        f"in {summary['elapsed_s']} s (release trees: {', '.join(sorted(summary['counts']))})"
    )
    return 0
