"""``avs proposals``: class-agnostic masks -> maskige [T,H,W,3] of one extraction shard (HDF5)."""

from __future__ import annotations

import argparse

from pipeline.proposals.config import ProposalParams
from pipeline.proposals.precomputed import NAME as PRECOMPUTED
from pipeline.proposals.precomputed import precomputed_shard
from pipeline.proposals.shard import KIND, propose_shard
from stages.common import StageContext, add_feature_stage, finish

SOURCE_KIND = "extract"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_feature_stage(parser, SOURCE_KIND, KIND)
    parser.add_argument("--cache-dir", help="per-video result cache (overrides proposals.cache_dir; '' disables)")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    params = ctx.section(ProposalParams, "proposals", cache_dir=args.cache_dir)
    dask_cfg = ctx.dask()
    in_path, out_path = ctx.shard_io(SOURCE_KIND, KIND)
    if params.backend == PRECOMPUTED:  # COMBO's published maskige PNGs: read, not computed
        failures, hits = (
            precomputed_shard(in_path, out_path, params, dataset=args.dataset or "", progress=ctx.progress),
            0,
        )
    else:
        failures, hits = propose_shard(
            in_path, out_path, params, dask_cfg, dataset=args.dataset or "", progress=ctx.progress
        )
    print(f"proposals {out_path}: backend {params.backend}, {hits} from cache, {len(failures.errors)} failed")
    return finish(failures, out_path, strict=args.strict, what=f"proposals {out_path}")
