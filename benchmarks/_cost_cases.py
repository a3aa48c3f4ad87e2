"""The stages ``bench_cost_model.py`` times, as ``Case`` records, and their inputs.

Inputs: generated AVSBench S4 videos listed with the manifest builder, extraction shards made from them
in-process, a shard of one-frame videos for the slow backends and a random-weight Semantic-SAM checkpoint.
Cases: extract, audio (YAMNet), COMBO's maskige tree, the MobileSAM presets and Semantic-SAM on the CPU,
each calling its stage's own shard function (``run``) and loading its model once per worker (``warm_up``).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import avsbench_full
from _bench_common import RESULTS_DIR

from pipeline.params import DaskParams

CACHE = RESULTS_DIR / "cache" / "bench_cost_model"
S4_FRAMES = 5  # frames (= seconds) of every measured S4 video
PRESETS = ("demo", "fast", "reference", "quality")
ONE_WORKER_PRESETS = ("reference", "quality")  # slow: 1 worker only, efficiency borrowed from `fast`


# ---------------------------------------------------------------- inputs
def s4_rows(count: int) -> tuple[list, Path]:
    """Manifest rows of ``count`` generated S4 videos (the tree is cached) and the S4 release folder."""
    from pipeline.manifest import SourceParams, build_manifest

    fraction = max(0.005, 1.05 * count / sum(avsbench_full.COUNTS["s4"]))
    raw = CACHE / f"raw-{fraction:.5f}"
    avsbench_full.generate(raw, ["s4"], fraction, seed=0, workers=1)
    root = raw / "Single-source"
    rows = build_manifest(SourceParams(source="avsbench_s4", root=str(root)), num_shards=1, progress=False)
    if len(rows) < count:
        raise SystemExit(f"{root}: {len(rows)} videos listed, {count} asked for")
    return sorted(rows, key=lambda r: r.video_id)[:count], root


def first_frames_shard(source: Path, out: Path, count: int) -> Path:
    """An extraction shard of one-frame videos (frame 0 of the first ``count`` videos of ``source``)."""
    from pipeline.shards import ShardReader, ShardWriter

    with ShardReader(source) as reader, ShardWriter(out, kind="extract", params_hash="first-frames") as writer:
        for video_id in reader.video_ids()[:count]:
            frames = reader.read(video_id, "frames", index=slice(0, 1))
            writer.write_video(video_id, {"frames": frames}, {"num_seconds": 1, "split": "test", "task": "s4"})
    return out


def random_semantic_sam_checkpoint(out: Path, tiny: bool) -> Path:
    """A Semantic-SAM checkpoint with seeded random weights under the official key names (SwinL, or the
    reduced TINY config for the quick run)."""
    import torch

    from pipeline.proposals.semantic_sam import SWINL, TINY, SemanticSam

    torch.manual_seed(0)
    torch.save(SemanticSam(TINY if tiny else SWINL).state_dict(), out)
    return out


# ---------------------------------------------------------------- the stages as cases
@dataclass
class Case:
    """One stage (or proposal backend) to time: ``run(empty, dask_cfg, out)`` calls its shard function over
    zero videos or over the case's videos; ``warm_up(on_worker)`` imports it and loads its model."""

    name: str
    label: str
    videos: int
    frames_per_video: int
    modes: tuple[int, ...]
    run: Callable[[bool, DaskParams, Path], Any]
    warm_up: Callable[[bool], None]
    note: str = ""
    efficiency_from: str | None = None  # another case whose measured efficiency this one takes
    serial: bool = False  # the stage does not use dask
    extra: dict[str, Any] = field(default_factory=dict)


def _checked(failures: Any, name: str) -> None:
    errors = failures.errors
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} videos failed, e.g. {errors[0].video_id}: {errors[0].reason}")


def _extract_run(rows: list, empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.extraction import ExtractParams, extract_shard

    failures = extract_shard([] if empty else rows, out, ExtractParams(), cfg, "s4", progress=False, reuse=False)
    _checked(failures, "extract")


def _extract_warm_up(on_worker: bool) -> None:
    import pipeline.extraction  # noqa: F401 - the import is the warm-up (no model)


def _audio_run(shards: tuple[Path, Path], empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.audio.features import AudioParams
    from pipeline.audio.shard import compute_audio_shard

    source = shards[0] if empty else shards[1]
    _checked(compute_audio_shard(source, out, AudioParams(), cfg, progress=False, reuse=False), "audio")


def _audio_warm_up(on_worker: bool) -> None:
    from pipeline.audio.features import AudioParams, get_encoder

    get_encoder(AudioParams(), 1 if on_worker else None)  # what EncodeChunk builds (threads_per_worker: 1)


def _combo_run(tree: Path, manifest: Path, shards: tuple[Path, Path], empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.proposals.precomputed import ComboMaskigeTree

    source = shards[0] if empty else shards[1]
    failures, _ = ComboMaskigeTree(str(tree)).write_shard(source, out, dataset="s4", manifest=manifest, progress=False)
    _checked(failures, "combo maskiges")


def _combo_warm_up(on_worker: bool) -> None:
    import pipeline.proposals.precomputed  # noqa: F401


def _propose_run(params: Any, shards: tuple[Path, Path], empty: bool, cfg: DaskParams, out: Path) -> None:
    from pipeline.proposals.shard import propose_shard

    source = shards[0] if empty else shards[1]
    failures, _ = propose_shard(source, out, params, cfg, dataset="s4", progress=False, reuse=False)
    _checked(failures, f"proposals {params.backend}")


def _propose_warm_up(params: Any, on_worker: bool) -> None:
    import torch

    from pipeline.proposals.backends import cached_backend

    torch.set_num_threads(params.threads_per_worker)
    cached_backend(params)


def build_cases(args: argparse.Namespace, work: Path) -> list[Case]:
    """The cases of this run, their inputs prepared under ``work`` (extraction shards made in-process)."""
    from pipeline.extraction import ExtractParams, extract_shard
    from pipeline.manifest import write_manifest

    rows, root = s4_rows(args.videos)
    manifest = work / "manifest.csv"
    write_manifest(rows, manifest)
    shard = work / "inputs" / "extract-all.h5"
    empty = work / "inputs" / "extract-none.h5"
    demo_shard = work / "inputs" / "extract-demo.h5"
    for path, subset in ((shard, rows), (empty, []), (demo_shard, rows[: args.demo_videos])):
        _checked(extract_shard(subset, path, ExtractParams(), DaskParams(n_workers=0), "s4", progress=False), "inputs")
    slow = first_frames_shard(shard, work / "inputs" / "extract-first-frames.h5", args.slow_videos)
    n, full = len(rows), (0, 1, 2)
    cases = [
        Case("extract", "extract_shard", n, S4_FRAMES, full, functools.partial(_extract_run, rows), _extract_warm_up),
        Case("audio", "compute_audio_shard, yamnet", n, S4_FRAMES, full, functools.partial(_audio_run, (empty, shard)),
             _audio_warm_up, note="videos go to workers in chunks of audio.batch_seconds (64 s)"),
        Case("proposals:combo", "COMBO maskige tree (pre_SAM_mask)", n, S4_FRAMES, (0,),
             functools.partial(_combo_run, root / "s4_data" / "pre_SAM_mask", manifest, (empty, shard)),
             _combo_warm_up, serial=True, note="reads the tree in the stage's process: no dask"),
    ]  # fmt: skip
    presets = [_mobile_sam_case(p, args, (empty, slow), (empty, demo_shard)) for p in args.presets]
    # The presets timed on one worker (efficiency borrowed from `fast`) go last: they are optional extras.
    cases += [c for c in presets if not c.efficiency_from]
    if args.semantic_sam:
        cases.append(_semantic_sam_case(args, work, (empty, slow)))
    return cases + [c for c in presets if c.efficiency_from]


def _mobile_sam_case(preset: str, args: argparse.Namespace, slow: tuple[Path, Path], demo: tuple[Path, Path]) -> Case:
    """A MobileSAM preset: demo on whole videos (0, 1, 2 workers); the 1024-input presets on one-frame videos,
    on 1 and 2 workers (fast) or 1 worker (reference, quality: efficiency from fast)."""
    from pipeline.proposals.config import ProposalParams

    params = ProposalParams(backend="mobile_sam", preset=preset, cache_dir="")
    one_worker, is_slow = preset in ONE_WORKER_PRESETS, preset != "demo"
    count, frames = (args.slow_videos, 1) if is_slow else (args.demo_videos, S4_FRAMES)
    modes = (1,) if one_worker else (1, 2) if is_slow else (0, 1, 2)
    return Case(f"proposals:mobile_sam:{preset}", f"MobileSAM preset {preset}", count, frames, modes,
                functools.partial(_propose_run, params, slow if is_slow else demo),
                functools.partial(_propose_warm_up, params),
                efficiency_from="proposals:mobile_sam:fast" if one_worker else None,
                note="one-frame videos (frame 0 of each)" if is_slow else "")  # fmt: skip


def _semantic_sam_case(args: argparse.Namespace, work: Path, slow: tuple[Path, Path]) -> Case:
    """Semantic-SAM on the CPU through the proposals stage, with a random-weight checkpoint written here."""
    from pipeline.proposals.config import ProposalParams

    checkpoint = random_semantic_sam_checkpoint(work / "semantic_sam_random.pth", tiny=args.quick)
    params = ProposalParams(backend="semantic_sam", checkpoint=str(checkpoint), cache_dir="",
                            semantic_sam={"device": "cpu"})  # fmt: skip
    arch = "TINY config (quick smoke run only)" if args.quick else "SwinL"
    return Case("proposals:semantic_sam", f"Semantic-SAM CPU, {arch}, random weights", args.slow_videos, 1, (1, 2),
                functools.partial(_propose_run, params, slow), functools.partial(_propose_warm_up, params),
                note="seeded random weights (no official checkpoint offline): official FLOPs, fewer kept masks; "
                "one-frame videos", extra={"architecture": arch, "checkpoint_bytes": checkpoint.stat().st_size})  # fmt: skip
