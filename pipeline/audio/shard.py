"""One audio shard from one extraction shard: log-mel + embeddings of every video.

Reads ``audio`` int16 [T*16000] and the ``num_seconds`` attribute (T) of each video of an
extraction shard, and writes ``logmel`` float32 [T,96,64] and ``embeddings`` float32 [T,D] per
video to the audio shard (same shard id, kind "audio"), with the encoder's provenance in the
file attributes. Videos are grouped into chunks of about ``batch_seconds`` seconds so that each
encoder call covers many videos; chunks run on dask workers, each of which loads the encoder
once. A video whose audio is missing or unreadable goes to the failures log, never aborts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import DiskFullError
from pipeline.audio.encoders import AudioEncoderError
from pipeline.audio.features import AudioParams, clip_features, get_encoder, get_provenance, validate_clip
from pipeline.audio.streamed import STREAM_SECONDS, stream_clip_features
from pipeline.failures import FailureLog
from pipeline.feature_record import record_attrs
from pipeline.parallel import map_ordered
from pipeline.params import DaskParams, params_hash
from pipeline.shards import (
    CONTENT_DIGEST,
    SOURCE_DIGEST,
    InOrder,
    PreviousShard,
    ShardError,
    ShardReader,
    ShardWriter,
)

KIND = "audio"
SOURCE_KIND = "extract"
# Attribute names that hold T in an extraction shard, in order of preference.
_SECONDS_ATTRS = ("num_seconds", "T")


@dataclass(frozen=True)
class ClipJob:
    """One video's input, shipped to a worker."""

    video_id: str
    audio: np.ndarray  # int16 [N]
    num_seconds: int
    audio_source: str = ""
    source_digest: str = ""  # the extracted video's content digest, copied into the audio shard


@dataclass(frozen=True)
class EncodeChunk:
    """Picklable worker function: features of a chunk of clips with the per-process encoder."""

    params: AudioParams
    num_threads: int | None = None
    cache_dir: str | None = None  # absolute: workers may run elsewhere

    def __call__(self, chunk: list[ClipJob]) -> list[dict[str, np.ndarray]]:
        encoder = get_encoder(self.params, self.num_threads, self.cache_dir)
        return clip_features([(job.audio, job.num_seconds) for job in chunk], encoder)


def audio_params_hash(params: AudioParams) -> str:
    return params_hash({"stage": KIND, **asdict(params)})


def clip_seconds(reader: ShardReader, video_id: str) -> int:
    """T of one video of an extraction shard (its ``num_seconds`` attribute)."""
    attrs = reader.video_attrs(video_id)
    seconds = next((attrs[name] for name in _SECONDS_ATTRS if name in attrs), None)
    if seconds is None:
        raise ValueError(f"no {' / '.join(_SECONDS_ATTRS)} attribute (number of seconds T)")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, np.integer)) or int(seconds) < 1:
        raise ValueError(f"number of seconds T must be a positive integer, got {seconds!r}")
    return int(seconds)


def read_clip(reader: ShardReader, video_id: str, num_seconds: int) -> ClipJob:
    """Audio of one video of an extraction shard; ValueError/ShardError says what is wrong."""
    if "audio" not in reader.keys(video_id):
        raise ValueError("no 'audio' array in the extraction shard")
    try:
        audio = reader.read(video_id, "audio")
    except OSError as error:  # h5py reports corrupt chunks as OSError
        raise ValueError(f"audio is unreadable ({error})") from error
    audio = validate_clip(audio, num_seconds)
    attrs = reader.video_attrs(video_id)
    return ClipJob(video_id, audio, num_seconds, str(attrs.get("audio_source", "")), attrs.get(CONTENT_DIGEST, ""))


def plan_chunks(
    reader: ShardReader, seconds_per_chunk: int, failures: FailureLog, source: str, skip: frozenset[str] = frozenset()
) -> list[list[tuple[str, int]]]:
    """Group (video_id, T) into chunks of at most ``seconds_per_chunk`` seconds (at least one video each),
    leaving out the videos in ``skip`` (reused from the previous shard)."""
    plan: list[list[tuple[str, int]]] = []
    seconds = 0
    for video_id in reader.video_ids():
        if video_id in skip:
            continue
        try:
            num_seconds = clip_seconds(reader, video_id)
        except (ShardError, ValueError) as error:
            failures.add(video_id, str(error), source=source)
            continue
        if not plan or seconds + num_seconds > seconds_per_chunk:
            plan.append([])
            seconds = 0
        plan[-1].append((video_id, num_seconds))
        seconds += num_seconds
    return plan


def _read_chunks(
    reader: ShardReader, plan: list[list[tuple[str, int]]], failures: FailureLog, source: str
) -> Iterator[list[ClipJob]]:
    """Read each planned chunk's audio when the parallel map asks for it (memory stays flat)."""
    for planned in plan:
        chunk = []
        for video_id, num_seconds in planned:
            try:
                chunk.append(read_clip(reader, video_id, num_seconds))
            except (ShardError, ValueError, TypeError) as error:
                failures.add(video_id, str(error), source=source)
        yield chunk


def reusable_videos(reader: ShardReader, previous: PreviousShard) -> frozenset[str]:
    """The videos of an extraction shard whose features the previous derived shard holds, made from the
    same extracted arrays (its ``source_digest`` is their ``content_digest``)."""
    if previous.reader is None:
        return frozenset()
    return frozenset(
        video_id
        for video_id in reader.video_ids()
        if previous.matches(video_id, SOURCE_DIGEST, reader.video_attrs(video_id, [CONTENT_DIGEST]).get(CONTENT_DIGEST))
    )


def compute_audio_shard(
    in_path: Path,
    out_path: Path,
    params: AudioParams,
    dask_cfg: DaskParams,
    progress: bool = True,
    reuse: bool = True,
    encoder_cache: Path | None = None,
) -> FailureLog:
    """Write the audio shard ``out_path`` for extraction shard ``in_path``; returns the failures.

    The encoder's provenance goes into the shard's file attributes; it is read first (a missing checkpoint
    stops the stage with its message before any work). With ``reuse``, videos made from unchanged
    extracted audio are copied from the previous shard at ``out_path`` (:mod:`pipeline.shards.reuse`);
    the encoder is built only when some video is left to compute (:func:`_build_encoder`), from what it
    keeps in ``encoder_cache`` when it keeps anything (YAMNet's edited graph; None: nothing is kept).
    """
    failures = FailureLog(stage=KIND)
    provenance = get_provenance(params)
    threads = None if (dask_cfg.scheduler_address is None and dask_cfg.n_workers == 0) else dask_cfg.threads_per_worker
    cache_dir = str(Path(encoder_cache).resolve()) if encoder_cache is not None else None
    work = EncodeChunk(params, threads, cache_dir)
    source = str(in_path)
    with ShardReader(in_path) as reader:
        source_attrs = reader.file_attrs()
        if source_attrs.get("kind", SOURCE_KIND) != SOURCE_KIND:
            raise ShardError(
                f"{in_path}: expected an extraction shard (kind 'extract'), got kind {source_attrs['kind']!r}"
            )
        file_attrs = {
            **provenance,
            "dataset": source_attrs.get("dataset", ""),
            "source_shard": source,
            "source_params_hash": source_attrs.get("params_hash", ""),
            **record_attrs(KIND, params),
        }
        digest = audio_params_hash(params)
        with (
            ShardWriter(out_path, kind=KIND, params_hash=digest, attrs=file_attrs) as writer,
            PreviousShard(out_path, writer.file_attrs, enabled=reuse) as previous,
        ):
            reused = reusable_videos(reader, previous)
            streamed = long_clips(reader, reused)
            plan = plan_chunks(reader, params.batch_seconds, failures, source, skip=reused | set(streamed))
            encoder = _build_encoder(params, provenance, cache_dir) if plan or streamed else None
            in_main = MainProcessVideos(reader, writer, previous, streamed, encoder, digest, failures)
            in_order = InOrder(reader.video_ids(), reused | set(streamed), in_main)
            chunks = _read_chunks(reader, plan, failures, source)
            outcomes = map_ordered(
                work, chunks, dask_cfg=dask_cfg, desc=f"audio {out_path.stem}", total=len(plan), progress=progress
            )
            for chunk, outcome in outcomes if plan else ():
                for job, result in zip(chunk, _chunk_results(chunk, outcome, encoder, failures, source)):
                    if result is None:
                        continue
                    in_order.before(job.video_id)
                    attrs = _video_attrs(job.num_seconds, job.audio_source, digest, job.source_digest)
                    arrays = {"logmel": result["logmel"], "embeddings": result["embeddings"]}
                    writer.write_video(job.video_id, arrays, {**attrs, "num_examples": int(result["num_examples"])})
            in_order.finish()
            if previous.reason not in ("no previous shard", "reuse turned off"):
                print(f"audio {out_path.name}: {previous.summary(len(reader.video_ids()))}")
    return failures


def _build_encoder(params: AudioParams, provenance: dict[str, str], cache_dir: str | None) -> Any:
    """The encoder, once some video must be computed; its provenance must be the one the shard's header
    was written with (:func:`get_provenance` read it without building the encoder)."""
    encoder = get_encoder(params, None, cache_dir)
    if dict(encoder.provenance) != provenance:
        differs = sorted(
            k for k in encoder.provenance.keys() | provenance.keys() if encoder.provenance.get(k) != provenance.get(k)
        )
        raise AudioEncoderError(f"audio encoder {params.encoder!r}: built encoder's provenance differs in {differs}")
    return encoder


def _chunk_results(chunk: list[ClipJob], outcome: Any, encoder: Any, failures: FailureLog, source: str) -> list:
    """The features of a chunk's clips (None for a clip that failed)."""
    if outcome.ok:
        return outcome.value
    # A chunk failed as a whole: redo its clips one by one here so only the bad one is lost.
    results: list = []
    for job in chunk:
        try:
            results.extend(clip_features([(job.audio, job.num_seconds)], encoder))
        except Exception as error:  # noqa: BLE001 - one bad video must not stop the shard
            failures.add(job.video_id, f"audio features failed: {error}", source=source)
            results.append(None)
    return results


def _video_attrs(num_seconds: int, audio_source: str, digest: str, source_digest: str) -> dict[str, Any]:
    return {
        "num_seconds": num_seconds,
        "audio_source": audio_source,
        "params_hash": digest,
        SOURCE_DIGEST: source_digest,
    }


def long_clips(reader: ShardReader, skip: frozenset[str]) -> dict[str, int]:
    """video id -> T of the clips over :data:`STREAM_SECONDS`, computed in the main process a window
    at a time (a bad T is left to :func:`plan_chunks` to report)."""
    found = {}
    for video_id in reader.video_ids():
        if video_id in skip:
            continue
        try:
            seconds = clip_seconds(reader, video_id)
        except (ShardError, ValueError):
            continue
        if seconds > STREAM_SECONDS:
            found[video_id] = seconds
    return found


@dataclass
class MainProcessVideos:
    """Writes, in the main process, the videos the workers do not compute: copies of reused ones and
    long clips streamed window by window (a bad one is recorded as a failure)."""

    reader: ShardReader
    writer: ShardWriter
    previous: PreviousShard
    streamed: dict[str, int]
    encoder: Any
    digest: str
    failures: FailureLog

    def __call__(self, video_id: str) -> None:
        if video_id not in self.streamed:
            self.previous.copy(self.writer, video_id)
            return
        attrs = self.reader.video_attrs(video_id, ["audio_source", CONTENT_DIGEST])
        video_attrs = _video_attrs(
            self.streamed[video_id], str(attrs.get("audio_source", "")), self.digest, attrs.get(CONTENT_DIGEST, "")
        )
        try:
            stream_clip_features(self.reader, self.writer, video_id, self.streamed[video_id], self.encoder, video_attrs)
        except DiskFullError:
            raise
        except Exception as error:  # noqa: BLE001 - one bad video must not stop the shard
            failures_reason = str(error) if isinstance(error, ValueError) else f"audio features failed: {error}"
            self.failures.add(video_id, failures_reason, source=str(self.reader.path))
