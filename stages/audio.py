"""``avs audio``: VGGish log-mel examples and audio embeddings of one extraction shard (HDF5)."""

from __future__ import annotations

import argparse

from pipeline.audio.features import AudioParams
from pipeline.audio.shard import KIND, SOURCE_KIND, compute_audio_shard
from pipeline.shards import failures_file
from stages.common import StageContext, add_common, add_dask, finish



def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, shard=True)
    add_dask(parser)
    parser.add_argument("--in", dest="in_path",
                        help="extraction shard .h5 (default: {data.root}/{dataset}/extract/shard-NNN.h5)")
    parser.add_argument("--out", help="output shard .h5 (default: {data.root}/{dataset}/audio/shard-NNN.h5)")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any video fails")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    params = ctx.section(AudioParams, "audio")
    dask_cfg = ctx.dask()
    in_path, out_path = ctx.shard_io(SOURCE_KIND, KIND)
    failures = compute_audio_shard(in_path, out_path, params, dask_cfg, progress=ctx.progress)
    print(f"audio {out_path}: encoder {params.encoder}, {len(failures.errors)} failed")
    return finish(failures, failures_file(out_path), strict=args.strict, what=f"audio {out_path}")
