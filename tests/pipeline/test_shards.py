"""The located read path (ShardReader.read, and ArrayReader on recorded locations) gives exactly the
arrays h5py's own read gives.

h5py is imported here (and only here outside pipeline/shards/) to read the files the plain way and
to build chunk layouts ShardWriter never writes (raw chunks, shuffle, damaged or missing chunks).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline import shards
from pipeline.shards import ArrayReader, ShardReader, ShardWriter, located
from pipeline.shards import reader as reader_module

T = 4
INDICES = [None, 0, 2, -1, np.int64(1), slice(1, 3), slice(None, None, 2), slice(3, 1), slice(-2, None)]


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (T, 24, 32, 3), dtype=np.uint8)
    frames[:, :8] = 17  # flat regions as well as noise, as real frames have
    masks = np.zeros((T, 24, 32), np.uint8)
    masks[:, 5:15, 3:20] = 1
    masks[1, 0, 0] = 255
    return {
        "frames": frames,  # [T,H,W,3]: per-frame chunks + gzip (fast path)
        "gt_masks": masks,  # [T,H,W]: same
        "logmel": rng.normal(size=(T, 96, 64)).astype(np.float32),  # float [T,96,64]: same
        "embeddings": rng.normal(size=(T, 1030)).astype(np.float32),  # 2-D, gzip with h5py's chunks: h5py path
        "audio": rng.integers(-3000, 3000, T * 1600, dtype=np.int16),  # 1-D, gzip: h5py path
        "gt_valid": np.array([True, False, True, True]),  # 1-D, small, contiguous: h5py path
    }


@pytest.fixture
def shard(tmp_path) -> Path:
    path = tmp_path / "shard-0.h5"
    with ShardWriter(path, kind="extract", params_hash="t") as writer:
        writer.write_video("a/b", arrays())
    return path


@pytest.fixture
def inflate_calls(monkeypatch) -> list[int]:
    """Counts ISA-L inflations (one per compressed chunk read by the fast path)."""
    calls: list[int] = []
    real = located._isal_decompress
    assert real is not None, "isal is a declared dependency; the fast path must be tested"

    def counting(data: bytes) -> bytes:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(located, "_isal_decompress", counting)
    return calls


def plain_read(path: Path, key: str, index, video: str = "a%2Fb") -> np.ndarray:
    with h5py.File(path, "r") as f:
        dataset = f["videos"][video][key]
        return dataset[()] if index is None else dataset[index]


def assert_same(ours: np.ndarray, plain: np.ndarray) -> None:
    assert type(ours) is type(plain)
    assert ours.dtype == plain.dtype and ours.shape == plain.shape
    assert np.array_equal(ours, plain)


@pytest.mark.parametrize("key", list(arrays()))
def test_reads_equal_plain_h5py(shard, inflate_calls, key):
    with ShardReader(shard) as reader:
        for index in INDICES:
            assert_same(reader.read("a/b", key, index), plain_read(shard, key, index))
        array = reader.read("a/b", key)
        assert array.flags.writeable  # torch.from_numpy needs no copy and gives no warning
    # Every deflated layout goes through the one located path; the small contiguous array has nothing to inflate.
    assert bool(inflate_calls) == (key != "gt_valid")


def test_frames_array_equals_what_was_written(shard, inflate_calls):
    with ShardReader(shard) as reader:
        assert np.array_equal(reader.read("a/b", "frames"), arrays()["frames"])
    assert len(inflate_calls) == T  # one chunk per frame


def test_without_isal_reads_inflate_with_zlib(shard, monkeypatch):
    monkeypatch.setattr(located, "_isal_decompress", None)
    with ShardReader(shard) as reader:
        for key, expected in arrays().items():
            assert np.array_equal(reader.read("a/b", key), expected)
            assert_same(reader.read("a/b", key, 1), plain_read(shard, key, 1))


def add_dataset(path: Path, key: str, **kwargs) -> h5py.Dataset:
    f = h5py.File(path, "a")
    return f["videos"]["a%2Fb"].create_dataset(key, **kwargs)


def test_chunk_stored_uncompressed_is_read_as_is(shard, inflate_calls):
    frames = arrays()["frames"]
    dataset = add_dataset(
        shard,
        "mixed",
        shape=frames.shape,
        dtype=np.uint8,
        chunks=(1, *frames.shape[1:]),
        compression="gzip",
        compression_opts=4,
    )
    dataset[0::2] = frames[0::2]  # deflated by HDF5
    for t in (1, 3):  # stored raw; filter mask bit 0 says the deflate filter was skipped
        dataset.id.write_direct_chunk((t, 0, 0, 0), frames[t].tobytes(), filter_mask=1)
    dataset.file.close()
    with ShardReader(shard) as reader:
        assert np.array_equal(reader.read("a/b", "mixed"), frames)
        assert_same(reader.read("a/b", "mixed", 1), plain_read(shard, "mixed", 1))
    assert len(inflate_calls) == 2  # frames 0 and 2; the raw frames 1 and 3 are not inflated


def test_other_filters_and_unwritten_chunks_use_h5py(shard, inflate_calls):
    frames = arrays()["frames"]
    add_dataset(
        shard, "shuffled", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip", shuffle=True
    ).file.close()
    add_dataset(
        shard, "checksummed", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip", fletcher32=True
    ).file.close()
    add_dataset(
        shard, "two_frames_per_chunk", data=frames, chunks=(2, *frames.shape[1:]), compression="gzip"
    ).file.close()
    partial = add_dataset(
        shard,
        "partial",
        shape=frames.shape,
        dtype=np.uint8,
        chunks=(1, *frames.shape[1:]),
        compression="gzip",
        fillvalue=7,
    )
    partial[0] = frames[0]
    partial.file.close()
    with ShardReader(shard) as reader:
        for key in ("shuffled", "checksummed"):
            assert np.array_equal(reader.read("a/b", key), frames)
        assert_same(reader.read("a/b", "partial"), plain_read(shard, "partial", None))
        assert (reader.read("a/b", "partial", 3) == 7).all()
        assert inflate_calls == []  # h5py's path: layouts the located path cannot read
        for index in INDICES:  # chunks of two frames: located, and only the chunks holding the frames
            assert_same(
                reader.read("a/b", "two_frames_per_chunk", index), plain_read(shard, "two_frames_per_chunk", index)
            )


@pytest.mark.parametrize("rows", [1, 3, T, T + 2])
def test_windows_cover_each_array_once_and_equal_h5py_slices(shard, rows):
    frames = arrays()["frames"]
    add_dataset(shard, "two_frames_per_chunk", data=frames, chunks=(2, *frames.shape[1:]), compression="gzip")
    add_dataset(shard, "shuffled", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip", shuffle=True)
    with ShardReader(shard) as reader:
        for key in [*arrays(), "two_frames_per_chunk", "shuffled"]:  # located layouts and h5py's
            length = reader.shape("a/b", key)[0]
            windows = list(reader.iter_windows("a/b", key, rows))
            assert [start for start, _ in windows] == list(range(0, length, rows))
            for start, window in windows:
                assert_same(window, plain_read(shard, key, slice(start, start + rows)))
                assert window.flags.c_contiguous and window.flags.writeable


def test_a_window_inflates_and_allocates_only_its_own_frames(shard, inflate_calls):
    with ShardReader(shard) as reader:
        windows = reader.iter_windows("a/b", "frames", 3)
        start, window = next(windows)
        assert (start, len(inflate_calls), window.shape[0]) == (0, 3, 3)
        start, window = next(windows)
        assert (start, len(inflate_calls), window.shape[0]) == (3, 4, 1)
        assert window.base is None or window.base.shape[0] == 1  # not a view of a whole-array buffer
        with pytest.raises(ValueError, match="must be >= 1"):
            next(reader.iter_windows("a/b", "frames", 0))
        with pytest.raises(shards.ShardError, match="has no 'nope'"):
            next(reader.iter_windows("a/b", "nope", 2))


def test_damaged_chunk_is_a_shard_error_naming_the_array(shard):
    frames = arrays()["frames"]
    dataset = add_dataset(shard, "damaged", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip")
    dataset.id.write_direct_chunk((2, 0, 0, 0), b"not a zlib stream at all")
    dataset.file.close()
    with ShardReader(shard) as reader:
        assert np.array_equal(reader.read("a/b", "damaged", 1), frames[1])  # its own chunk is intact
        with pytest.raises(shards.ShardError, match="'damaged': damaged chunk"):
            reader.read("a/b", "damaged")


def test_has_array_and_missing_arrays(shard):
    with ShardReader(shard) as reader:
        assert reader.has_array("a/b", "frames") and not reader.has_array("a/b", "nope")
        assert not reader.has_array("missing", "frames")
        with pytest.raises(shards.ShardError, match="has no 'nope'"):
            reader.read("a/b", "nope")
        with pytest.raises(shards.ShardError, match="no video 'missing'"):
            reader.read("missing", "frames")
        assert reader.shape("a/b", "frames") == (T, 24, 32, 3)


def test_scalar_empty_and_text_arrays_read_like_h5py(tmp_path, inflate_calls):
    path = tmp_path / "shard-1.h5"
    odd = {
        "scalar": np.float32(3.5),
        "empty": np.zeros((0, 3), np.int16),
        "empty_frames": np.zeros((0, 4, 4, 3), np.uint8),
        "text": np.array([b"ab", b"cde"]),
        "big_endian": np.arange(6000, dtype=">i4").reshape(2, 3000),
    }
    with ShardWriter(path, kind="extract", params_hash="t") as writer:
        writer.write_video("v", odd)
    with ShardReader(path) as reader:
        for key in odd:
            assert_same(reader.read("v", key), plain_read(path, key, None, video="v"))
    assert inflate_calls == []


# -- located arrays (ShardReader.locate + ArrayReader) ----------------------------------------------


def test_located_reads_equal_plain_h5py_without_hdf5(shard, inflate_calls, monkeypatch):
    with ShardReader(shard) as reader:
        locations = {key: reader.locate("a/b", key) for key in arrays()}
    assert all(location.direct for location in locations.values())  # every layout ShardWriter writes
    expected = {key: plain_read(shard, key, None) for key in arrays()}
    # No HDF5 call while reading: any h5py file open or read would fail.
    monkeypatch.setattr(h5py, "File", None)
    monkeypatch.setattr(reader_module, "ShardReader", None)
    with ArrayReader() as files:
        for key, location in locations.items():
            array = files.read(location)
            assert_same(array, expected[key])
            assert array.flags.writeable and array.flags.c_contiguous
    per_frame = sum(arrays()[k].shape[0] for k in ("frames", "gt_masks", "logmel"))
    assert len(inflate_calls) >= per_frame  # plus the chunks of the 1-D/2-D gzip arrays


def test_located_reads_without_isal_use_zlib(shard, monkeypatch):
    monkeypatch.setattr(located, "_isal_decompress", None)
    with ShardReader(shard) as reader, ArrayReader() as files:
        for key, expected in arrays().items():
            assert np.array_equal(files.read(reader.locate("a/b", key)), expected)


def test_located_layouts_that_need_hdf5_are_read_through_h5py(shard, tmp_path):
    frames = arrays()["frames"]
    add_dataset(
        shard, "shuffled", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip", shuffle=True
    ).file.close()
    add_dataset(shard, "compact", data=np.arange(6, dtype=np.int32), dcpl=_compact_plist()).file.close()
    partial = add_dataset(
        shard,
        "partial",
        shape=frames.shape,
        dtype=np.uint8,
        chunks=(1, *frames.shape[1:]),
        compression="gzip",
        fillvalue=7,
    )
    partial[0] = frames[0]
    partial.file.close()
    mixed = add_dataset(
        shard, "mixed", shape=frames.shape, dtype=np.uint8, chunks=(1, *frames.shape[1:]), compression="gzip"
    )
    mixed[0::2] = frames[0::2]
    for t in (1, 3):
        mixed.id.write_direct_chunk((t, 0, 0, 0), frames[t].tobytes(), filter_mask=1)
    mixed.file.close()
    odd = tmp_path / "odd.h5"
    with ShardWriter(odd, kind="extract", params_hash="t") as writer:
        writer.write_video(
            "v",
            {
                "text": np.array([b"ab", b"cde"]),
                "big_endian": np.arange(6000, dtype=">i4").reshape(2, 3000),
                "scalar": np.float32(3.5),
            },
        )
    with ShardReader(shard) as reader, ShardReader(odd) as other, ArrayReader() as files:
        located = {key: reader.locate("a/b", key) for key in ("shuffled", "compact", "partial", "mixed")}
        located.update({key: other.locate("v", key) for key in ("text", "big_endian", "scalar")})
        assert [k for k, loc in located.items() if loc.direct] == ["mixed"]  # raw chunks beside deflated ones
        for key, location in located.items():
            path, video = (shard, "a%2Fb") if location.path == str(shard) else (odd, "v")
            assert_same(files.read(location), plain_read(path, key, None, video=video))


def _compact_plist() -> h5py.h5p.PropDCID:
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_layout(h5py.h5d.COMPACT)
    return plist


def test_located_damaged_chunk_and_missing_arrays_raise_shard_errors(shard):
    frames = arrays()["frames"]
    dataset = add_dataset(shard, "damaged", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip")
    dataset.id.write_direct_chunk((2, 0, 0, 0), b"not a zlib stream at all")
    dataset.file.close()
    with ShardReader(shard) as reader, ArrayReader() as files:
        with pytest.raises(shards.ShardError, match="damaged chunk"):
            files.read(reader.locate("a/b", "damaged"))
        with pytest.raises(shards.ShardError, match="has no 'nope'"):
            reader.locate("a/b", "nope")
        with pytest.raises(shards.ShardError, match="no video 'missing'"):
            reader.locate("missing", "frames")


def test_located_reads_refuse_a_rewritten_shard(shard, tmp_path):
    with ShardReader(shard) as reader:
        location = reader.locate("a/b", "frames")
    with ShardReader(shard) as reader:
        assert reader.locate("a/b", "frames") == location  # same file, same record
    copy = tmp_path / "copy.h5"
    shutil.copy2(shard, copy)
    os.replace(copy, shard)  # what a stage does: a new file renamed into place
    with ArrayReader() as files, pytest.raises(shards.ShardError, match="changed after its arrays were located"):
        files.read(location)


def test_array_reader_opens_its_own_files_after_fork(shard, monkeypatch):
    with ShardReader(shard) as reader:
        location = reader.locate("a/b", "frames")
    files = ArrayReader()
    files.read(location)
    parent_fd = files._fds[location.path]
    monkeypatch.setattr(os, "getpid", lambda: -7)  # as seen from a forked child
    assert np.array_equal(files.read(location), arrays()["frames"])
    assert files._fds[location.path] != parent_fd  # its own descriptor; the parent's is left alone
    os.fstat(parent_fd)  # still open
    monkeypatch.undo()
    os.close(parent_fd)
    files._pid = -7  # the child's files, closed by the child only
    files.close()
