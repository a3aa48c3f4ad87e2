"""One shard: extraction frames in, maskige shard (kind "proposals") out.

Frames are read from the extraction shard (kind "extract", key "frames" uint8 [T,H,W,3]) on
the worker, proposals run with a backend loaded once per worker process, finished videos are
reused from the content-addressed cache, and the main process writes the output shard in
manifest order. A video that fails (bad frames, model error) goes to the failures log.

Output per video: ``maskige`` uint8 [T,H,W,3] (gzip, one chunk per frame), ``mask_counts``
int32 [T] (masks per frame), ``dropped_masks`` int32 [T] (masks beyond the palette); file
attributes carry the backend, checkpoint path and sha256, and every proposal setting
(:func:`shard_provenance`, the one writer of them for every maskige source).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.failures import FailureLog
from pipeline.feature_record import record_attrs
from pipeline.hashing import file_sha256
from pipeline.parallel import map_ordered
from pipeline.params import DaskParams, params_hash
from pipeline.proposals.backends import cached_backend, resolve_checkpoint
from pipeline.proposals.cache import MASKIGE_FORMAT_VERSION, ProposalCache, cached_propose_video
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.model_files import ProposalModelError, load_state_dict
from pipeline.shards import CONTENT_DIGEST, SOURCE_DIGEST, InOrder, PreviousShard, ShardReader, ShardWriter

KIND = "proposals"
FRAMES_KEY = "frames"


def shard_provenance(
    dataset: str,
    source: str,
    checkpoint: str,
    checkpoint_sha256: str,
    record: ProposalParams,
    settings: dict[str, Any],
    extract_path: Path,
) -> dict[str, Any]:
    """A proposals shard's file attributes: where its maskiges came from (``source``: a backend name or a
    tree reader), the typed ``proposals_params`` record training copies (``record``: the settings that
    make such maskiges), what changes the masks (``settings``) and the extraction shard read."""
    return {
        "dataset": dataset,
        "backend": source,
        "checkpoint": checkpoint,
        "checkpoint_sha256": checkpoint_sha256,
        **record_attrs(KIND, record),
        "proposal_settings": settings,
        "maskige_format": MASKIGE_FORMAT_VERSION,
        "source_shard": str(extract_path),
    }


def shard_hash(settings: dict[str, Any], checkpoint_sha256: str) -> str:
    """The shard's params hash: what changes its maskiges."""
    return params_hash({"settings": settings, "checkpoint_sha256": checkpoint_sha256, "format": MASKIGE_FORMAT_VERSION})


def preflight(params: ProposalParams) -> tuple[str, str]:
    """Fail fast, in the main process, with a clear message: (checkpoint path, its sha256)."""
    checkpoint = resolve_checkpoint(params)
    if not Path(checkpoint).is_file():
        raise ProposalModelError(
            f"{checkpoint}: {params.backend} checkpoint not found (set proposals.checkpoint in params.yaml)"
        )
    if params.backend in ("mobile_sam", "sam"):
        load_state_dict(Path(checkpoint))  # a corrupt file stops the stage here, not as N per-video failures
    return checkpoint, file_sha256(checkpoint)


def propose_one(video_id: str, *, extract_path: str, params: ProposalParams) -> dict[str, Any]:
    """Worker task: read one video's frames, propose (or reuse the cache), return arrays + attrs."""
    import torch

    with ShardReader(extract_path) as reader:
        if not reader.has(video_id):
            raise ValueError(f"{extract_path}: video {video_id!r} has no extracted frames")
        frames = reader.read(video_id, FRAMES_KEY)
        source_digest = reader.video_attrs(video_id).get(CONTENT_DIGEST, "")
    torch.set_num_threads(params.threads_per_worker)  # per worker: proposals.threads_per_worker
    backend = cached_backend(params)
    cache = ProposalCache(params.cache_dir) if params.cache_dir else None
    with warnings.catch_warnings(record=True) as caught:  # a refused cache entry: recorded in the failures file
        warnings.simplefilter("always")
        result, hit = cached_propose_video(frames, backend, params.model_settings(), cache)
    return {
        "arrays": {"maskige": result.maskige, "mask_counts": result.mask_counts, "dropped_masks": result.dropped},
        "attrs": {"cache_hit": hit, "num_frames": int(frames.shape[0]), SOURCE_DIGEST: source_digest},
        "warnings": [str(w.message) for w in caught],
    }


def propose_shard(
    extract_path: Path,
    out_path: Path,
    params: ProposalParams,
    dask_cfg: DaskParams,
    video_ids: list[str] | None = None,
    dataset: str = "",
    progress: bool = True,
    reuse: bool = True,
) -> tuple[FailureLog, int]:
    """Write the proposals shard for ``video_ids`` (default: every video of the extraction shard).
    With ``reuse``, videos made from unchanged frames are copied from the previous shard at ``out_path``
    (:mod:`pipeline.shards.reuse`).

    Returns (failures, number of videos served from the cache).
    """
    checkpoint, checkpoint_sha = preflight(params)
    record = params  # as configured (no machine path from resolving the cache)
    if params.cache_dir:  # workers may run elsewhere: ship an absolute path
        params = replace(params, cache_dir=str(Path(params.cache_dir).resolve()))
    if video_ids is None:
        with ShardReader(extract_path) as reader:
            video_ids = reader.video_ids()
    settings = params.model_settings()  # what changes the masks (cache key), with the resolved encoder size
    provenance = shard_provenance(dataset, params.backend, checkpoint, checkpoint_sha, record, settings, extract_path)
    work = functools.partial(propose_one, extract_path=str(extract_path), params=params)
    failures = FailureLog(stage=KIND)
    hits = 0
    with (
        ShardWriter(out_path, kind=KIND, params_hash=shard_hash(settings, checkpoint_sha), attrs=provenance) as writer,
        PreviousShard(out_path, writer.file_attrs, enabled=reuse) as previous,
    ):
        reused = _reusable(extract_path, video_ids, previous)
        in_order = InOrder(video_ids, reused, lambda video_id: previous.copy(writer, video_id))
        todo = [video_id for video_id in video_ids if video_id not in reused]
        outcomes = map_ordered(work, todo, dask_cfg=dask_cfg, desc=f"proposals {out_path.stem}", progress=progress)
        for video_id, outcome in outcomes if todo else ():
            in_order.before(video_id)
            if not outcome.ok:
                failures.add(video_id, outcome.error or "unknown error", source=str(extract_path))
                continue
            hits += int(outcome.value["attrs"]["cache_hit"])
            for warning in outcome.value["warnings"]:
                failures.warn(video_id, warning, source=str(extract_path))
            writer.write_video(video_id, outcome.value["arrays"], outcome.value["attrs"])
        in_order.finish()
        if previous.reason not in ("no previous shard", "reuse turned off"):
            print(f"proposals {out_path.name}: {previous.summary(len(video_ids))}")
    return failures, hits


def _reusable(extract_path: Path, video_ids: list[str], previous: PreviousShard) -> set[str]:
    """The videos whose maskiges the previous shard holds, made from the frames extracted now."""
    if previous.reader is None:
        return set()
    with ShardReader(extract_path) as reader:
        digests = {v: reader.video_attrs(v, [CONTENT_DIGEST]).get(CONTENT_DIGEST) for v in video_ids if reader.has(v)}
    return {video_id for video_id, digest in digests.items() if previous.matches(video_id, SOURCE_DIGEST, digest)}
