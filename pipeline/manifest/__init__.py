"""Manifests: one CSV per dataset listing every video, where its media and labels are, and its shard.

``schema``: the row and its columns; ``sources``: folder and AVSBench release trees -> rows;
``hash_cache``: sha256s and ffmpeg probes of source files remembered across runs; ``build``: list + hash + probe + shard;
``files``: the manifest CSV and its per-shard slices (written atomically, validated when read).

Adding a video, or editing one of its frames, its wav or a label image, changes exactly one shard's slice (``{data}/{dataset}/manifest/shard-N.csv``),
so only that shard's extraction reruns.
"""

from __future__ import annotations

from pipeline.manifest.build import (
    build_manifest,
    labels_identity,
    source_identity,
    unreadable_summary,
    verify_source,
)
from pipeline.manifest.files import read_manifest, shard_slice_file, write_manifest, write_shard_slices
from pipeline.manifest.hash_cache import HashCache, ProbeCache
from pipeline.manifest.schema import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    SPLITS,
    LocalSources,
    ManifestError,
    ManifestRow,
    shard_of,
    validate_video_id,
)
from pipeline.manifest.sources import (
    MEDIA,
    SOURCES,
    VIDEO_EXTENSIONS,
    SourceParams,
    list_rows,
    release_root,
    rows_from_avsbench_ms3,
    rows_from_avsbench_s4,
    rows_from_avsbench_semantic,
    rows_from_folder,
    scan_folder,
)

__all__ = [
    "COLUMNS",
    "MEDIA",
    "OPTIONAL_COLUMNS",
    "SOURCES",
    "SPLITS",
    "VIDEO_EXTENSIONS",
    "HashCache",
    "LocalSources",
    "ManifestError",
    "ManifestRow",
    "ProbeCache",
    "SourceParams",
    "build_manifest",
    "labels_identity",
    "list_rows",
    "read_manifest",
    "release_root",
    "rows_from_avsbench_ms3",
    "rows_from_avsbench_s4",
    "rows_from_avsbench_semantic",
    "rows_from_folder",
    "scan_folder",
    "shard_of",
    "shard_slice_file",
    "source_identity",
    "unreadable_summary",
    "validate_video_id",
    "verify_source",
    "write_manifest",
    "write_shard_slices",
]
