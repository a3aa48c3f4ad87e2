"""``avs manifest``: list a dataset's videos (hashes, probe, labels, shard) into data_manifests/."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.manifest import SourceParams, build_manifest, write_manifest, write_shard_slices
from pipeline.params import ParamsError, from_section, section
from stages.common import StageContext, add_common



def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--source", help="folder | avsbench_s4 | avsbench_ms3 | avsbench_semantic (overrides params)")
    parser.add_argument("--root", help="dataset root folder (overrides params)")
    parser.add_argument("--seconds", type=int, help="folder sources: seconds T per video")
    parser.add_argument("--out", help="manifest CSV (default: {data.manifests}/{dataset}.csv)")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    if not args.dataset:
        raise ParamsError("--dataset is required")
    datasets = section(ctx.params, "manifest").get("datasets") or {}
    entry = dict(datasets.get(args.dataset) or {})
    if args.source:
        entry["source"] = args.source
    if args.root:
        entry["root"] = args.root
    if args.seconds:
        entry["seconds"] = args.seconds
    if not entry:
        raise ParamsError(f"dataset {args.dataset!r} is not in manifest.datasets and --source/--root were not given")
    cfg = from_section(SourceParams, entry, f"manifest.datasets.{args.dataset}")
    rows = build_manifest(cfg, ctx.data.num_shards, hash_cache=ctx.data_root / "cache" / "sha256.json",
                          progress=ctx.progress)
    out = Path(args.out) if args.out else Path(ctx.data.manifests) / f"{args.dataset}.csv"
    write_manifest(rows, out)
    write_shard_slices(rows, ctx.data_root, args.dataset, ctx.data.num_shards)
    unreadable = sum(1 for r in rows if r.probe_error)
    print(f"manifest {args.dataset}: {len(rows)} videos in {ctx.data.num_shards} shards -> {out}"
          + (f" ({unreadable} unreadable, reported by extract)" if unreadable else ""))
    return 0
