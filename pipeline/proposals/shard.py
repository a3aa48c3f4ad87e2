"""One shard: extraction frames in, maskige shard (kind "proposals") out.

Frames are read from the extraction shard (kind "extract", key "frames" uint8 [T,H,W,3]) on
the worker, proposals run with a backend loaded once per worker process, finished videos are
reused from the content-addressed cache, and the main process writes the output shard in
manifest order. A video that fails (bad frames, model error) goes to the failures log.

A video longer than :data:`WINDOW_FRAMES` frames is split into windows of that many frames: each window
is one work item (read, proposed and cached on its own) and the main process appends the windows to
the video's arrays in order (:meth:`pipeline.shards.ShardWriter.begin_video`), so no process holds
more than a window of a video, whatever its length. A frame's masks depend on that frame alone, so
the arrays (and their digests) equal those of the video proposed whole.

Output per video: ``maskige`` uint8 [T,H,W,3] (gzip, one chunk per frame), ``mask_counts``
int32 [T] (masks per frame), ``dropped_masks`` int32 [T] (masks beyond the palette); file
attributes carry the backend, checkpoint path and sha256, and every proposal setting
(:func:`shard_provenance`, the one writer of them for every maskige source).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.failures import FailureLog
from pipeline.feature_record import record_attrs
from pipeline.hashing import file_sha256
from pipeline.parallel import map_ordered
from pipeline.params import DaskParams, params_hash
from pipeline.proposals.backends import cached_backend, resolve_checkpoint
from pipeline.proposals.cache import MASKIGE_FORMAT_VERSION, ProposalCache, cached_propose_video
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.model_files import ProposalModelError, load_state_dict
from pipeline.shards import (
    CONTENT_DIGEST,
    SOURCE_DIGEST,
    InOrder,
    PreviousShard,
    ShardError,
    ShardReader,
    ShardWriter,
    VideoWriter,
)

KIND = "proposals"
FRAMES_KEY = "frames"
# Frames per work item of a longer video. 64 frames of 224x224 are 9.6 MB, as many again of maskiges:
# with two items in flight per worker thread a worker stays far under the 1 GB of a feature stage.
# 64 is also the extraction's window (64 s at 1 frame/s) and the size of a long video's cache entries.
WINDOW_FRAMES = 64


@dataclass(frozen=True)
class FramesPart:
    """One work item: frames ``[start, stop)`` of a video of ``num_frames`` frames, or the whole video
    (``stop`` None: also when its frames cannot be measured; the worker then says what is wrong)."""

    video_id: str
    start: int = 0
    stop: int | None = None
    num_frames: int | None = None

    @property
    def whole(self) -> bool:
        return self.stop is None

    @property
    def last(self) -> bool:
        return self.stop is None or self.stop == self.num_frames


def plan_parts(extract_path: Path, video_ids: list[str], window_frames: int = WINDOW_FRAMES) -> list[FramesPart]:
    """The work items of ``video_ids``, in order: a video of more than ``window_frames`` frames as its
    windows, any other as one item."""
    parts: list[FramesPart] = []
    with ShardReader(extract_path) as reader:
        for video_id in video_ids:
            shape = reader.shape(video_id, FRAMES_KEY) if reader.has_array(video_id, FRAMES_KEY) else ()
            count = int(shape[0]) if shape else 0
            if count <= window_frames:
                parts.append(FramesPart(video_id))
                continue
            for start in range(0, count, window_frames):
                parts.append(FramesPart(video_id, start, min(count, start + window_frames), count))
    return parts


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


def propose_one(part: FramesPart, *, extract_path: str, params: ProposalParams) -> dict[str, Any]:
    """Worker task: read one video's frames (or one window of them), propose (or reuse the cache), return
    arrays + attrs."""
    import torch

    video_id = part.video_id
    with ShardReader(extract_path) as reader:
        if not reader.has(video_id):
            raise ValueError(f"{extract_path}: video {video_id!r} has no extracted frames")
        index = None if part.whole else slice(part.start, part.stop)
        frames = reader.read(video_id, FRAMES_KEY, index)
        source_digest = reader.video_attrs(video_id, [CONTENT_DIGEST]).get(CONTENT_DIGEST, "")
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
    window_frames: int = WINDOW_FRAMES,
) -> tuple[FailureLog, int]:
    """Write the proposals shard for ``video_ids`` (default: every video of the extraction shard).
    With ``reuse``, videos made from unchanged frames are copied from the previous shard at ``out_path``
    (:mod:`pipeline.shards.reuse`). Videos of more than ``window_frames`` frames are proposed and
    written a window at a time.

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
    with (
        ShardWriter(out_path, kind=KIND, params_hash=shard_hash(settings, checkpoint_sha), attrs=provenance) as writer,
        PreviousShard(out_path, writer.file_attrs, enabled=reuse) as previous,
    ):
        reused = _reusable(extract_path, video_ids, previous)
        in_order = InOrder(video_ids, reused, lambda video_id: previous.copy(writer, video_id))
        todo = plan_parts(extract_path, [video_id for video_id in video_ids if video_id not in reused], window_frames)
        outcomes = map_ordered(work, todo, dask_cfg=dask_cfg, desc=f"proposals {out_path.stem}", progress=progress)
        parts = PartWriter(writer, failures, str(extract_path))
        for part, outcome in outcomes if todo else ():
            if part.start == 0:
                in_order.before(part.video_id)
            parts.write(part, outcome)
        in_order.finish()
        if previous.reason not in ("no previous shard", "reuse turned off"):
            print(f"proposals {out_path.name}: {previous.summary(len(video_ids))}")
    return failures, parts.hits


class PartWriter:
    """Writes the work items' results, in order: a whole video in one call, a windowed one appended window
    by window to its open :class:`VideoWriter` (closed at its last window). A failed item fails its video:
    the part written so far is removed and its later windows are skipped."""

    def __init__(self, writer: ShardWriter, failures: FailureLog, source: str) -> None:
        self.writer, self.failures, self.source = writer, failures, source
        self.hits = 0  # videos served from the cache (a windowed one: every window)
        self._open: VideoWriter | None = None
        self._failed = ""  # the windowed video whose remaining windows are skipped

    def write(self, part: FramesPart, outcome: Any) -> None:
        if part.video_id == self._failed:
            return
        if not outcome.ok:
            self._fail(part, outcome.error or "unknown error")
            return
        for warning in outcome.value["warnings"]:
            self.failures.warn(part.video_id, warning, source=self.source)
        arrays, attrs = outcome.value["arrays"], outcome.value["attrs"]
        if part.whole:
            self.hits += int(attrs["cache_hit"])
            self.writer.write_video(part.video_id, arrays, attrs)
            return
        if part.start == 0:
            self._open = self._begin(part, arrays, {**attrs, "num_frames": part.num_frames})
        assert self._open is not None and self._open.video_id == part.video_id, "windows arrive in order"
        try:
            for key, block in arrays.items():
                self._open.write(key, part.start, block)
        except ShardError as error:  # a window that does not fit the video's arrays: that video fails
            self._fail(part, str(error))
            return
        self._open.attrs["cache_hit"] = bool(self._open.attrs["cache_hit"] and attrs["cache_hit"])
        if part.last:
            video, self._open = self._open, None
            video.__exit__(None, None, None)
            self.hits += int(video.attrs["cache_hit"])

    def _begin(self, part: FramesPart, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> VideoWriter:
        """The windowed video's writer, its arrays sized from the first window's (T rows each)."""
        shapes = {key: (int(part.num_frames or 0), *np.shape(block)[1:]) for key, block in arrays.items()}
        dtypes = {key: np.asarray(block).dtype for key, block in arrays.items()}
        return self.writer.begin_video(part.video_id, shapes, dtypes, attrs).__enter__()

    def _fail(self, part: FramesPart, reason: str) -> None:
        where = "" if part.whole else f"frames {part.start}..{int(part.stop or 0) - 1} of {part.num_frames}: "
        self.failures.add(part.video_id, where + reason, source=self.source)
        if self._open is not None and self._open.video_id == part.video_id:
            video, self._open = self._open, None
            failure = ShardError(reason)
            video.__exit__(type(failure), failure, None)  # removes the part written so far
        if not part.last:
            self._failed = part.video_id


def _reusable(extract_path: Path, video_ids: list[str], previous: PreviousShard) -> set[str]:
    """The videos whose maskiges the previous shard holds, made from the frames extracted now."""
    if previous.reader is None:
        return set()
    with ShardReader(extract_path) as reader:
        digests = {v: reader.video_attrs(v, [CONTENT_DIGEST]).get(CONTENT_DIGEST) for v in video_ids if reader.has(v)}
    return {video_id for video_id, digest in digests.items() if previous.matches(video_id, SOURCE_DIGEST, digest)}
