"""Files read back are verified before use (issue 23, item 2): checkpoints (tensor hashes, finite
weights, resume against the run), proposals cache entries, and the source-hash cache."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.manifest import HashCache
from pipeline.proposals.cache import ProposalCache, VideoProposals, cached_propose_video
from stages.cli import main
from tests.train.conftest import make_toy_params, write_toy_shards
from train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from train.evaluate import EvalParams, evaluate
from train.loop import train


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data root with toy shards, a finished 2-step combo_tiny checkpoint)."""
    root = tmp_path_factory.mktemp("integrity")
    write_toy_shards(root / "data")
    torch.set_num_threads(1)
    result = train(make_toy_params(max_steps=2), str(root / "data"), [0], root / "run", progress=False)
    return root / "data", Path(result["final"])


def _flip_bytes_in_largest_tensor(source: Path, target: Path, count: int = 64) -> None:
    """Copy ``source`` with ``count`` bytes inverted in the middle of its largest tensor's stored bytes
    (torch's zip stores tensors uncompressed; its loader does not check the zip CRCs)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + count):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))


def _one_line_naming(err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], err


def test_flipped_tensor_bytes_are_refused_by_evaluate_predict_and_resume(toy_run, tmp_path, capsys):
    data_root, checkpoint = toy_run
    flipped = tmp_path / "flipped.pt"
    _flip_bytes_in_largest_tensor(checkpoint, flipped)
    with pytest.raises(CheckpointError, match="flipped.pt: .* does not match the hash written at save"):
        load_checkpoint(flipped)
    with pytest.raises(CheckpointError, match="flipped.pt"):
        evaluate(flipped, EvalParams(datasets=["toy"], overlays=0), str(data_root), [0], tmp_path / "eval")
    with pytest.raises(CheckpointError, match="flipped.pt"):
        train(make_toy_params(max_steps=4), str(data_root), [0], tmp_path / "run", resume=str(flipped), progress=False)
    assert main(["predict", str(flipped), "--checkpoint", str(flipped), "--out", str(tmp_path / "o")]) == 2
    _one_line_naming(capsys.readouterr().err, "flipped.pt")
    assert not (tmp_path / "o" / "masks").exists()


def test_nan_weights_are_refused(toy_run, tmp_path, capsys):
    """Every weight NaN, saved with consistent hashes: predict wrote masks from it before."""
    _, checkpoint = toy_run
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"] = {
        k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
    }
    nan = tmp_path / "nan.pt"
    save_checkpoint(ckpt, nan)
    with pytest.raises(CheckpointError, match="nan.pt: .* NaN or infinite"):
        load_checkpoint(nan)
    assert main(["predict", str(nan), "--checkpoint", str(nan), "--out", str(tmp_path / "o")]) == 2
    _one_line_naming(capsys.readouterr().err, "nan.pt")


def test_a_checkpoint_without_hashes_is_refused(toy_run, tmp_path):
    _, checkpoint = toy_run
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["tensor_sha256"]
    torch.save(ckpt, tmp_path / "nohash.pt")
    with pytest.raises(CheckpointError, match="nohash.pt: no tensor hashes"):
        load_checkpoint(tmp_path / "nohash.pt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step": 10**12}, "step 1000000000000 is outside this run's 0..4"),
        ({"step": -3}, "step -3 is outside"),
        ({"model_name": "combo_mnv2"}, "a checkpoint of 'combo_mnv2', not of train.model 'combo_tiny'"),
        ({"model_config": {"num_queries": 99}}, "model config differs from this run's"),
    ],
)
def test_resume_refuses_a_checkpoint_of_another_run(toy_run, tmp_path, change, message):
    data_root, checkpoint = toy_run
    ckpt = torch.load(checkpoint, weights_only=True)
    for key, value in change.items():
        ckpt[key] = {**ckpt[key], **value} if isinstance(value, dict) else value
    other = tmp_path / "other.pt"
    save_checkpoint(ckpt, other)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=message):
        train(make_toy_params(max_steps=4), str(data_root), [0], run, resume=str(other), progress=False)
    assert not (run / "model.pt").exists()


# ---------------------------------------------------------------- proposals cache
class _CountingBackend:
    """A real (tiny) proposal backend: one mask per distinct colour of the frame."""

    name = "colours"
    checkpoint_sha256 = "none"

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, frame: np.ndarray):
        from pipeline.proposals.backends import Proposals

        self.calls += 1
        colours = np.unique(frame.reshape(-1, 3), axis=0)
        masks = np.stack([(frame == c).all(-1) for c in colours])
        return Proposals(masks=masks, scores=np.ones(len(masks), np.float32))


def _frames() -> np.ndarray:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    frames[:, 4:10, 4:10] = (200, 10, 10)
    frames[1, 0:3] = (10, 200, 10)
    return frames


def _tamper(path: Path, **arrays: np.ndarray) -> None:
    with np.load(path) as stored:
        fields = {k: stored[k] for k in stored.files}
    fields.update(arrays)
    np.savez_compressed(path.with_suffix(""), **fields)  # savez appends .npz


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: {"maskige": 255 - e.maskige},  # edited, key kept
        lambda e: {"maskige": e.maskige.astype(np.float64), "mask_counts": np.full_like(e.mask_counts, -99)},
        lambda e: {"maskige": e.maskige[:, :8]},
        lambda e: {"arrays_sha256": np.array("0" * 64)},
    ],
    ids=["edited", "float64-negative-counts", "shape", "hash-field"],
)
def test_a_tampered_cache_entry_is_recomputed_with_a_warning(tmp_path, tamper):
    cache, backend, frames = ProposalCache(tmp_path / "cache"), _CountingBackend(), _frames()
    first, hit = cached_propose_video(frames, backend, {"s": 1}, cache)
    assert not hit and backend.calls == 2
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    _tamper(entry, **tamper(first))
    with pytest.warns(UserWarning, match=entry.name):
        again, hit = cached_propose_video(frames, backend, {"s": 1}, cache)
    assert not hit and backend.calls == 4
    np.testing.assert_array_equal(again.maskige, first.maskige)
    assert again.maskige.dtype == np.uint8 and (again.mask_counts >= 0).all()
    _, hit = cached_propose_video(frames, backend, {"s": 1}, cache)  # rewritten: a hit again
    assert hit and backend.calls == 4


def test_an_intact_cache_entry_is_served(tmp_path):
    cache, backend, frames = ProposalCache(tmp_path / "cache"), _CountingBackend(), _frames()
    first, _ = cached_propose_video(frames, backend, {"s": 1}, cache)
    served, hit = cached_propose_video(frames, backend, {"s": 1}, cache)
    assert hit and backend.calls == 2 and isinstance(served, VideoProposals)
    np.testing.assert_array_equal(served.maskige, first.maskige)


# ---------------------------------------------------------------- source hashes
def test_source_hash_is_recomputed_when_content_changes_with_same_size_and_mtime(tmp_path):
    video = tmp_path / "a.bin"
    video.write_bytes(b"A" * 1000)
    stat = video.stat()
    cache_file = tmp_path / "sha256.json"
    cache = HashCache(cache_file)
    first = cache.sha256(video)
    cache.save()
    video.write_bytes(b"B" * 1000)  # same size
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the ctime moves
    assert video.stat().st_size == stat.st_size and video.stat().st_mtime_ns == stat.st_mtime_ns
    second = HashCache(cache_file).sha256(video)
    assert second != first
    import hashlib

    assert second == hashlib.sha256(b"B" * 1000).hexdigest()


@pytest.mark.parametrize("content", ["[]", "{broken", '{"format": 2, "entries": []}', '"text"'])
def test_a_malformed_hash_cache_is_ignored_with_a_warning_naming_it(tmp_path, content):
    cache_file = tmp_path / "sha256.json"
    cache_file.write_text(content)
    video = tmp_path / "a.bin"
    video.write_bytes(b"abc")
    with pytest.warns(UserWarning, match="sha256.json"):
        cache = HashCache(cache_file)
    import hashlib

    assert cache.sha256(video) == hashlib.sha256(b"abc").hexdigest()
    cache.save()
    assert json.loads(cache_file.read_text())["format"] == 2
