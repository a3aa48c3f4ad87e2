"""``avs proposals``: class-agnostic masks -> maskige [T,H,W,3] of one extraction shard (HDF5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import ParamsError, section
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.shard import KIND, propose_shard
from pipeline.shards import failures_file, shard_file
from stages.common import StageContext, add_common, add_dask, finish

SOURCE_KIND = "extract"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, shard=True)
    add_dask(parser)
    parser.add_argument("--in", dest="in_path",
                        help="extraction shard .h5 (default: {data.root}/{dataset}/extract/shard-NNN.h5)")
    parser.add_argument("--out", help="output shard .h5 (default: {data.root}/{dataset}/proposals/shard-NNN.h5)")
    parser.add_argument("--cache-dir", help="per-video result cache (overrides proposals.cache_dir; '' disables)")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any video fails")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    mapping = dict(section(ctx.params, "proposals"))
    if args.cache_dir is not None:
        mapping["cache_dir"] = args.cache_dir
    params = ProposalParams.from_mapping(mapping)
    if args.in_path and args.out:
        in_path, out_path = Path(args.in_path), Path(args.out)
    elif args.dataset is not None and args.shard is not None:
        in_path = (Path(args.in_path) if args.in_path
                   else shard_file(ctx.data_root, args.dataset, SOURCE_KIND, args.shard))
        out_path = Path(args.out) if args.out else shard_file(ctx.data_root, args.dataset, KIND, args.shard)
    else:
        raise ParamsError("give --dataset and --shard, or --in and --out")
    if not in_path.is_file():
        raise ParamsError(f"{in_path}: extraction shard not found (run `avs extract` first)")
    failures, hits = propose_shard(in_path, out_path, params, ctx.dask(), dataset=args.dataset or "",
                                   progress=ctx.progress)
    print(f"proposals {out_path}: backend {params.backend}, {hits} from cache, {len(failures.errors)} failed")
    return finish(failures, failures_file(out_path), strict=args.strict, what=f"proposals {out_path}")
