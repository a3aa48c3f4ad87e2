"""``avs audio``: VGGish log-mel examples and audio embeddings of one extraction shard (HDF5)."""

from __future__ import annotations

import argparse

from pipeline.audio.features import AudioParams
from pipeline.audio.shard import KIND, SOURCE_KIND, compute_audio_shard
from stages.common import StageContext, add_feature_stage, finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_feature_stage(parser, SOURCE_KIND, KIND)
    parser.add_argument(
        "--no-reuse", dest="reuse", action="store_false", help="recompute every video (none copied from the last shard)"
    )


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    params = ctx.section(AudioParams, "audio")
    dask_cfg = ctx.dask()
    in_path, out_path = ctx.shard_io(SOURCE_KIND, KIND)
    # Beside the source hash cache (data/cache/): what the encoder derives from its weights, kept between runs.
    encoder_cache = ctx.source_hash_cache.parent / "yamnet"
    failures = compute_audio_shard(
        in_path, out_path, params, dask_cfg, progress=ctx.progress, reuse=args.reuse, encoder_cache=encoder_cache
    )
    print(f"audio {out_path}: encoder {params.encoder}, {len(failures.errors)} failed")
    return finish(failures, out_path, strict=args.strict, what=f"audio {out_path}")
