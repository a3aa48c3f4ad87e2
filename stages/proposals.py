"""``avs proposals``: one dataset's maskiges [T,H,W,3] per extraction shard (HDF5), from the dataset's
maskige source (a SAM-family backend, or COMBO's ``pre_SAM_mask`` tree: ``proposals.maskige_trees``)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pipeline.manifest import shard_slice_file
from pipeline.params import ParamsError
from pipeline.proposals.shard import KIND
from pipeline.proposals.sources import ProposalStageParams, maskige_source
from pipeline.shards import shard_file
from stages.common import StageContext, add_feature_stage, finish

SOURCE_KIND = "extract"
# the names this stage writes: shards, their digests (pipeline.shards.file_digest), their failures files
OWN_FILE = re.compile(r"shard-(0|[1-9][0-9]{0,8})(?:\.h5|\.h5\.sha256|\.failures\.csv)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_feature_stage(parser, SOURCE_KIND, KIND)
    parser.add_argument("--cache-dir", help="per-video result cache (overrides proposals.cache_dir; '' disables)")
    parser.add_argument(
        "--all-shards", action="store_true", help="every shard of data.shards (with --dataset; no --shard/--in/--out)"
    )
    parser.add_argument(
        "--no-reuse", dest="reuse", action="store_false", help="recompute every video (none copied from the last shard)"
    )


def _shards(ctx: StageContext) -> list[tuple[int | None, Path, Path]]:
    """(shard id or None, extraction shard, proposals shard) of each shard this run writes."""
    args = ctx.args
    if not args.all_shards:
        return [(args.shard, *ctx.shard_io(SOURCE_KIND, KIND))]
    if args.dataset is None or args.shard is not None or args.in_path or args.out:
        raise ParamsError("--all-shards takes --dataset and no --shard, --in or --out")
    found = []
    for shard in sorted(ctx.data.shards):
        in_path = shard_file(ctx.data_root, args.dataset, SOURCE_KIND, shard)
        if not in_path.is_file():
            raise ParamsError(f"{in_path}: {SOURCE_KIND} shard not found (run `avs {SOURCE_KIND}` first)")
        found.append((shard, in_path, shard_file(ctx.data_root, args.dataset, KIND, shard)))
    _remove_other_shards(ctx.data_root / args.dataset / KIND, set(ctx.data.shards))
    return found


def _remove_other_shards(folder: Path, shards: set[int]) -> None:
    """Delete this stage's own files (``shard-<N>.h5`` / ``.h5.sha256`` / ``.failures.csv`` exactly) of shard ids no
    longer in data.shards: the folder is a persistent DVC output, so nothing else removes them."""
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        owned = OWN_FILE.fullmatch(path.name)
        if owned and int(owned.group(1)) not in shards and path.is_file() and not path.is_symlink():
            path.unlink()
            print(f"proposals: removed {path} (shard {owned.group(1)} is not in data.shards)")


def _manifest_slice(ctx: StageContext, shard: int | None) -> Path | None:
    """The shard's manifest slice (how its frames were made), or None when run on bare --in/--out files."""
    if ctx.args.dataset is None or shard is None or (ctx.args.in_path and ctx.args.out):
        return None
    return shard_slice_file(ctx.data_root, ctx.args.dataset, shard)


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    params = ctx.section(ProposalStageParams, "proposals", cache_dir=args.cache_dir)
    dataset = args.dataset or ""
    tree_cache = ctx.source_hash_cache.with_name(f"maskiges-{dataset}.sha256.json")  # beside the manifest's
    source = maskige_source(params, dataset, ctx.dask(), reuse=args.reuse, tree_hash_cache=tree_cache)
    status = 0
    for shard, in_path, out_path in _shards(ctx):
        failures, hits = source.write_shard(
            in_path, out_path, dataset=args.dataset or "", manifest=_manifest_slice(ctx, shard), progress=ctx.progress
        )
        print(f"proposals {out_path}: {source.label}, {hits} from cache, {len(failures.errors)} failed")
        status = max(status, finish(failures, out_path, strict=args.strict, what=f"proposals {out_path}"))
    return status
