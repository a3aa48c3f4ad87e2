"""``avs extract``: decode one shard's videos into frames + 16 kHz audio + ground truth (HDF5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.extraction import ExtractParams, extract_shard
from pipeline.manifest import read_manifest, shard_slice_file
from pipeline.params import ParamsError
from pipeline.shards import shard_file
from stages.common import StageContext, add_common, add_dask, finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, shard=True)
    add_dask(parser)
    parser.add_argument("--manifest", help="manifest CSV (or slice) to extract (default: the shard's slice)")
    parser.add_argument("--out", help="output shard .h5 (default: {data.root}/{dataset}/extract/shard-N.h5)")
    parser.add_argument("--strict", action="store_true", default=None, help="exit non-zero if any video fails")
    parser.add_argument(
        "--no-reuse", dest="reuse", action="store_false", help="recompute every video (none copied from the last shard)"
    )


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    cfg = ctx.section(ExtractParams, "extract", strict=args.strict or None)
    dask_cfg = ctx.dask()  # every section is validated before any work
    if args.manifest and args.out:
        manifest, out = Path(args.manifest), Path(args.out)
    elif args.dataset is not None and args.shard is not None:
        manifest = Path(args.manifest) if args.manifest else shard_slice_file(ctx.data_root, args.dataset, args.shard)
        out = Path(args.out) if args.out else shard_file(ctx.data_root, args.dataset, "extract", args.shard)
    else:
        raise ParamsError("give --dataset and --shard, or --manifest and --out")
    rows = read_manifest(manifest, ctx.data.num_shards)
    if args.shard is not None and not args.manifest:
        rows = [r for r in rows if r.shard == args.shard]
    failures = extract_shard(
        rows,
        out,
        cfg,
        dask_cfg,
        dataset=args.dataset or "",
        progress=ctx.progress,
        hash_cache=ctx.source_hash_cache,
        reuse=args.reuse,
        ffmpeg_hash_cache=ctx.source_hash_cache.with_name("ffmpeg.sha256.json"),  # beside the sources' cache
    )
    done = len(rows) - len(failures.errors)
    print(f"extract {out}: {done}/{len(rows)} videos")
    return finish(failures, out, strict=cfg.strict, what=f"extract {out}")
