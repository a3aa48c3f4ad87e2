"""``avs manifest``: list a dataset's videos (hashes, probe, labels, shard) into data_manifests/."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.failures import FailureLog
from pipeline.manifest import SourceParams, build_manifest, unreadable_summary, write_manifest, write_shard_slices
from pipeline.params import ParamsError, from_section
from stages.common import StageContext, add_common


@dataclass
class ManifestStageParams:
    """The ``manifest`` section: one ``SourceParams`` entry per dataset name."""

    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--source", help="folder | avsbench_s4 | avsbench_ms3 | avsbench_semantic (overrides params)")
    parser.add_argument("--root", help="dataset root folder (overrides params)")
    parser.add_argument("--seconds", type=int, help="folder sources: seconds T per video")
    parser.add_argument("--out", help="manifest CSV (default: {data.manifests}/{dataset}.csv)")


def _source(ctx: StageContext, args: argparse.Namespace) -> SourceParams:
    """The dataset's entry of ``manifest.datasets`` with the command-line overrides, validated."""
    datasets = ctx.section(ManifestStageParams, "manifest").datasets
    entry = dict(datasets.get(args.dataset) or {})
    entry.update({key: getattr(args, key) for key in ("source", "root", "seconds") if getattr(args, key) is not None})
    if not entry:
        raise ParamsError(f"dataset {args.dataset!r} is not in manifest.datasets and --source/--root were not given")
    return from_section(SourceParams, entry, f"manifest.datasets.{args.dataset}")


def run(args: argparse.Namespace) -> int:
    ctx = StageContext(args)
    if not args.dataset:
        raise ParamsError("--dataset is required")
    cfg = _source(ctx, args)
    skipped: list[tuple[str, str]] = []
    rows = build_manifest(
        cfg,
        ctx.data.num_shards,
        hash_cache=ctx.source_hash_cache,
        probe_cache=ctx.source_hash_cache.with_name("probe.json"),  # beside it: ffmpeg runs only for changed files
        progress=ctx.progress,
        skipped=skipped,
    )
    out = Path(args.out) if args.out else Path(ctx.data.manifests) / f"{args.dataset}.csv"
    write_manifest(rows, out)
    write_shard_slices(rows, ctx.data_root, args.dataset, ctx.data.num_shards)
    log = FailureLog(stage="manifest")
    for rel, reason in skipped:
        log.warn(rel, f"not taken: {reason}", source=str(Path(cfg.root) / rel))
    for row in rows:
        if row.probe_error:
            log.add(row.video_id, row.probe_error, source=row.source_video or row.source_audio)
    log_path = ctx.data_root / args.dataset / "manifest" / "failures.csv"
    log.write(log_path)
    unreadable, reason = unreadable_summary(rows)
    print(
        f"manifest {args.dataset}: {len(rows)} videos in {ctx.data.num_shards} shards -> {out}"
        + (f" ({unreadable} unreadable, reported by extract)" if unreadable else "")
        + (f"; {len(skipped)} file(s) not taken, listed in {log_path}" if skipped else "")
    )
    if not rows or unreadable == len(rows):
        why = reason or f"no video found under {cfg.root}"
        print(
            f"avs manifest: error: dataset {args.dataset}: no readable video; most common reason: {why}"[:300],
            file=sys.stderr,
        )
        return 1
    return 0
