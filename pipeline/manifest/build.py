"""Building a manifest: list a source's rows, hash and probe each video and its labels, assign shards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline import media
from pipeline.hashing import sha256_of_digests
from pipeline.manifest.hash_cache import HashCache, NotCached, ProbeCache
from pipeline.manifest.paths import StatOnce
from pipeline.manifest.schema import (
    MAX_SECONDS,
    PROBED_COLUMNS,
    ManifestError,
    ManifestRow,
    padding_limit,
    probed_value_error,
    shard_of,
)
from pipeline.manifest.sources import SourceParams, list_rows


def source_identity(row: ManifestRow, hashes: HashCache) -> str:
    """sha256 of the row's source video, or of its frame images' and wav's hashes in order ('' when the
    video file is missing). Raises MediaError when a frame image is missing."""
    if row.source_video:
        return hashes.sha256_if_file(row.source_video) or ""
    frames = row.frame_paths
    parts = [hashes.sha256_if_file(p) for p in frames]
    missing = [p for p, digest in zip(frames, parts) if digest is None]
    if missing:
        raise media.MediaError(f"{missing[0]}: frame image missing ({len(missing)} of {len(frames)})")
    audio = hashes.sha256_if_file(row.source_audio) if row.source_audio else None
    return sha256_of_digests(parts if audio is None else [*parts, audio])


UNLABELLED = "-"  # stands for a second without a label image in ``labels_sha256``


def _label_digest(path: str, hashes: HashCache) -> str:
    if not path:
        return UNLABELLED
    digest = hashes.sha256_if_file(path)
    if digest is None:
        raise media.MediaError(f"{path}: label image missing")
    return digest


def labels_identity(row: ManifestRow, hashes: HashCache) -> str:
    """sha256 of the row's label images' hashes in order (``-`` for an unlabelled second); '' when the row
    has no labels. Raises MediaError when a listed label image is missing. The extraction stores the
    decoded labels, so this is part of what its shard slice must change with."""
    if not row.label_paths:
        return ""
    return sha256_of_digests([_label_digest(path, hashes) for path in row.label_paths.split(";")])


def verify_source(row: ManifestRow, hashes: HashCache) -> None:
    """Raise ManifestError when the row's sources or label images are no longer the files the manifest hashed
    (an edited or replaced video or mask): extracting them would store frames or ground truth the recorded
    ``source_sha256`` / ``labels_sha256`` do not describe. Unchanged files cost a stat each (the cache is
    keyed on the file's stat). A row of a manifest written before ``labels_sha256`` existed (empty) has
    its sources checked only."""
    if not row.source_sha256:
        return
    try:
        now = source_identity(row, hashes)
        labels_now = labels_identity(row, hashes) if row.labels_sha256 else ""
    except OSError as exc:
        raise ManifestError(f"{row.source_video or row.source_audio}: cannot hash the source ({exc})") from None
    if now != row.source_sha256:
        where = row.source_video or row.source_frames.split(";")[0]
        raise ManifestError(
            f"{where}: source changed since the manifest was built (sha256 {now[:12] or 'of a missing file'}..., "
            f"manifest {row.source_sha256[:12]}...): rerun `avs manifest`"
        )
    if labels_now != row.labels_sha256:
        raise ManifestError(
            f"{row.label_paths.split(';')[0] or row.video_id}: label images changed since the manifest was built "
            f"(sha256 {labels_now[:12]}..., manifest {row.labels_sha256[:12]}...): rerun `avs manifest`"
        )


def _probed_fields(row: ManifestRow, info: media.MediaInfo) -> None:
    """Write the probe's values into the row, each checked against the manifest schema's bounds, and T
    against the padding limit: a value that would make the manifest unreadable becomes the probe error."""
    row.duration = f"{info.duration:.3f}" if info.duration is not None else ""
    row.fps = f"{info.fps:g}" if info.fps else ""
    row.audio_channels = str(info.audio_channels or "") if info.has_audio else ""
    row.audio_rate = str(info.audio_rate or "") if info.has_audio else ""
    if row.task == "raw" and row.num_seconds <= 0:
        row.num_seconds = min(media.seconds_in(info), MAX_SECONDS)
    source = row.source_video or row.source_audio
    for name in PROBED_COLUMNS:
        reason = probed_value_error(name, getattr(row, name))
        if reason:
            setattr(row, name, "")
            raise media.MediaError(f"{source}: ffmpeg reports an unusable {name} ({reason})")
    if row.duration and row.num_seconds > padding_limit(float(row.duration)):
        raise media.MediaError(
            f"{source}: T={row.num_seconds} s asked of a {row.duration} s source "
            f"(at most {padding_limit(float(row.duration))}; the last frame would be repeated for the rest)"
        )


def _fill_media(row: ManifestRow, hashes: HashCache, probes: ProbeCache) -> ManifestRow:
    """Hash the sources and labels and probe the video (or the wav) of ``row``; unreadable files are noted,
    not raised."""
    try:
        row.source_sha256 = source_identity(row, hashes)
        row.labels_sha256 = labels_identity(row, hashes)
        if row.source_video:
            info = probes.probe(row.source_video)
        else:
            info = probes.probe(row.source_audio) if row.source_audio and hashes.is_file(row.source_audio) else None
        if info is not None:
            _probed_fields(row, info)
    except (media.MediaError, OSError) as exc:
        row.probe_error = str(exc)
    if row.num_seconds <= 0:
        row.num_seconds = 1
    return row


def _fill_from_caches(rows: list[ManifestRow], hashes: HashCache, probes: ProbeCache) -> list[ManifestRow]:
    """Fill, in this thread, the rows whose every file the caches know unchanged; return the others (files
    to hash or probe: the thread pool's work). With warm caches a pool only adds its overhead (~10% here).
    A row is handed on before any field but its hashes is written (``NotCached`` comes from the hash and
    probe lookups, which precede the rest), and the pool computes those again."""
    pending = []
    with hashes.lookups_only(), probes.lookups_only():
        for row in rows:
            try:
                _fill_media(row, hashes, probes)
            except NotCached:
                pending.append(row)
    return pending


def _with_bar(rows: Iterator[ManifestRow], total: int, done: int, desc: str) -> Iterator[ManifestRow]:
    from tqdm.auto import tqdm  # only for a visible bar: with it come asyncio and multiprocessing (~0.1 s)

    return tqdm(rows, total=total, initial=done, desc=desc, unit="video")


def build_manifest(
    cfg: SourceParams,
    num_shards: int,
    hash_cache: Path | None = None,
    threads: int = 4,
    progress: bool = True,
    skipped: list[tuple[str, str]] | None = None,
    probe_cache: Path | None = None,
) -> list[ManifestRow]:
    """List, hash and probe every video of a dataset source; assign shards. Files a folder source
    does not take are appended to ``skipped`` as (relative path, reason). ``hash_cache`` and
    ``probe_cache`` (JSON files, None: not kept) spare unchanged files their hashing and their ffmpeg run."""
    stats = StatOnce()  # one lstat per file for the listing and both caches
    rows = list_rows(cfg, skipped, stats)
    seen: set[str] = set()
    for row in rows:
        if row.video_id in seen:
            raise ManifestError(f"{cfg.root}: video id {row.video_id!r} appears twice")
        seen.add(row.video_id)
        row.shard = shard_of(row.video_id, num_shards)
    hashes, probes = HashCache(hash_cache, stats.lstat), ProbeCache(probe_cache, stats.lstat)
    pending = _fill_from_caches(rows, hashes, probes)
    if pending:
        # Probing is one short ffmpeg process per file: threads overlap the process start-up.
        with ThreadPoolExecutor(max_workers=threads) as pool:
            filled = pool.map(lambda r: _fill_media(r, hashes, probes), pending)
            done = len(rows) - len(pending)
            for _ in _with_bar(filled, len(rows), done, f"manifest {cfg.root}") if progress else filled:
                pass
    hashes.save()
    probes.save()
    return rows


def _reason_only(row: ManifestRow) -> str:
    """The probe error without the file name, so errors of different videos can be counted together."""
    error = row.probe_error
    for path in (row.source_video, row.source_audio, *row.frame_paths):
        if path and error.startswith(f"{path}: "):
            return error[len(path) + 2 :]
    return error


def unreadable_summary(rows: list[ManifestRow]) -> tuple[int, str]:
    """(number of unreadable rows, the most common reason with its count)."""
    bad = [r for r in rows if r.probe_error]
    if not bad:
        return 0, ""
    reason, count = Counter(_reason_only(r) for r in bad).most_common(1)[0]
    return len(bad), f"{reason} ({count} of {len(bad)})"
