"""The AVSBench release trees, built here from the official conventions (not by the demo generator),
read end to end: every video loads, and the labels equal what the official loaders return.

Conventions (OpenNLPLab/AVSBench ``avs_scripts/avs_s4|avs_ms3|avss``): S4 frames
``{name}_{1..5}.png``, train labelled on frame 1 only, masks read with PIL mode "1"; MS3 frames
``{video}.mp4_{1..5}.png`` without a split folder, all 5 labelled, masks read with mode "P" / 255;
AVSS frames ``frames/{0..}.jpg`` (5 for v1s/v1m, 10 for v2), v1s train labelled on frame 0 only,
RGB labels decoded against the 71-colour palette with unknown colours -> 0; train frames and labels
resized short side + centre crop, val/test resized.
"""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import labels
from pipeline.failures import read_failures
from pipeline.manifest import read_manifest
from pipeline.shards import ShardReader
from stages.cli import main

SIZE = (32, 32)  # extraction size; the official 224 scaled down for speed
RNG = np.random.default_rng(3)


# ---------------------------------------------------------------- the official rules, written out
def official_palette(n: int = 71) -> np.ndarray:
    """``_getpallete`` of the AVSS loader: bits of the label spread over R, G, B from the top bit."""
    pal = np.zeros((n, 3), np.int64)
    for j in range(n):
        lab, i = j, 0
        while lab > 0:
            pal[j, 0] |= ((lab >> 0) & 1) << (7 - i)
            pal[j, 1] |= ((lab >> 1) & 1) << (7 - i)
            pal[j, 2] |= ((lab >> 2) & 1) << (7 - i)
            i += 1
            lab >>= 3
    return pal


def official_s4_mask(path: Path, size) -> np.ndarray:
    img = Image.open(path).convert("1")
    return np.asarray(img.resize((size[1], size[0]), Image.NEAREST)).astype(np.uint8)


def official_ms3_mask(path: Path, size) -> np.ndarray:
    img = Image.open(path).convert("P").resize((size[1], size[0]), Image.NEAREST)
    value = np.asarray(img) / 255.0
    assert set(np.unique(value)) <= {0.0, 1.0}
    return value.astype(np.uint8)


def official_avss_label(path: Path, size, split: str) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if split == "train":  # crop_resize_img (square output)
        w, h = img.size
        if w > h:
            oh = size[0]
            ow = int(1.0 * w * oh / h)
        else:
            ow = size[1]
            oh = int(1.0 * h * ow / w)
        img = img.resize((ow, oh), Image.NEAREST)
        x1, y1 = int(round((ow - size[1]) / 2.0)), int(round((oh - size[0]) / 2.0))
        img = img.crop((x1, y1, x1 + size[1], y1 + size[0]))
    else:
        img = img.resize((size[1], size[0]), Image.NEAREST)
    rgb = np.asarray(img).astype(np.int32)
    maps = np.stack([np.all(rgb == colour, axis=-1) for colour in official_palette()], axis=-1)
    return np.argmax(maps.astype(np.float32), axis=-1).astype(np.uint8)


# ---------------------------------------------------------------- fixture builder
def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(16000)
        fh.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _frame(h: int = 40, w: int = 40) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _binary_mask(h: int = 40, w: int = 40) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    y, x = RNG.integers(0, h // 2), RNG.integers(0, w // 2)
    mask[y : y + h // 2, x : x + w // 3] = 255
    return mask


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


S4_VIDEOS = [
    ("aaa_0", "dog_barking", "train"),
    ("bbb_1", "dog_barking", "val"),
    ("ccc_2", "race_car", "test"),
    ("ddd_3", "race_car", "train"),
]
MS3_VIDEOS = [("m_000", "train"), ("m_001", "val"), ("m_002", "test")]
AVSS_VIDEOS = [
    ("u1s", "v1s", "train"),
    ("u2s", "v1s", "test"),
    ("u3m", "v1m", "train"),
    ("u4v", "v2", "train"),
    ("u5v", "v2", "val"),
]


def build_s4(root: Path) -> Path:
    top, data = root / "Single-source", root / "Single-source" / "s4_data"
    _csv(top / "s4_meta_data.csv", ["name", "start", "category", "split"], [[n, 0, c, s] for n, c, s in S4_VIDEOS])
    for name, cat, split in S4_VIDEOS:
        for k in range(1, 6):
            _png(data / "visual_frames" / split / cat / name / f"{name}_{k}.png", _frame())
            if k == 1 or split != "train":
                _png(data / "gt_masks" / split / cat / name / f"{name}_{k}.png", _binary_mask())
        _wav(data / "audio_wav" / split / cat / f"{name}.wav", 5.0)
    return top


def build_ms3(root: Path) -> Path:
    top, data = root / "Multi-sources", root / "Multi-sources" / "ms3_data"
    _csv(top / "ms3_meta_data.csv", ["video_id", "split"], [[v, s] for v, s in MS3_VIDEOS])
    for vid, split in MS3_VIDEOS:
        for k in range(1, 6):
            _png(data / "visual_frames" / vid / f"{vid}.mp4_{k}.png", _frame())
            _png(data / "gt_masks" / split / vid / f"{vid}_{k}.png", _binary_mask())
        _wav(data / "audio_wav" / split / f"{vid}.wav", 5.0)
    return top


def _avss_label(h: int, w: int) -> np.ndarray:
    """Palette colours of a few classes, plus a patch of a colour outside the palette."""
    pal = official_palette().astype(np.uint8)
    ids = RNG.choice([0, 3, 17, 70], size=(h // 8, w // 8))
    rgb = pal[np.kron(ids, np.ones((8, 8), np.int64))]
    rgb[h // 2 - 2 : h // 2 + 2, w // 2 - 3 : w // 2 + 3] = (
        1,
        2,
        3,
    )  # unknown colour: the official loader gives background
    return rgb


def build_avss(root: Path) -> Path:
    top = root / "AVSBench_semantic"
    _csv(
        top / "metadata.csv",
        ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"],
        [[uid[:2], uid, 0, 0, "dog", split, label] for uid, label, split in AVSS_VIDEOS],
    )
    (top / "label2idx.json").write_text(json.dumps({f"c{k}": k for k in range(71)}))
    for uid, label, split in AVSS_VIDEOS:
        folder, num = top / label / uid, 10 if label == "v2" else 5
        h, w = (48, 80) if label != "v1m" else (80, 48)  # landscape and portrait: the train crop matters
        for i in range(num):
            Image.fromarray(_frame(h, w)).save(_mk(folder / "frames" / f"{i}.jpg"), quality=95)
            if i == 0 or not (label == "v1s" and split == "train"):
                _png(folder / "labels_rgb" / f"{i}.png", _avss_label(h, w))
        _wav(folder / "audio.wav", float(num))
    return top


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release")
    build_s4(root), build_ms3(root), build_avss(root)
    return root


# ---------------------------------------------------------------- running the stages
def _params(tmp: Path, source: str, root: Path, shards: int = 1) -> Path:
    params = {
        "data": {
            "root": str(tmp / "data"),
            "manifests": str(tmp / "manifests"),
            "datasets": ["ds"],
            "shards": list(range(shards)),
        },
        "dask": {"n_workers": 0},
        "manifest": {"datasets": {"ds": {"source": source, "root": str(root)}}},
        "extract": {"frame_size": list(SIZE)},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _manifest_and_extract(tmp: Path, source: str, root: Path):
    params = _params(tmp, source, root)
    assert main(["manifest", "--params", str(params), "--dataset", "ds", "--no-progress"]) == 0
    assert main(["extract", "--params", str(params), "--dataset", "ds", "--shard", "0", "--no-progress"]) == 0
    rows = read_manifest(tmp / "manifests" / "ds.csv")
    shard = tmp / "data" / "ds" / "extract" / "shard-0.h5"
    errors = [f for f in read_failures(shard.with_suffix(".failures.csv")) if f["level"] == "error"]
    assert not errors
    return rows, shard


@pytest.mark.parametrize("where", ["Single-source", "Single-source/s4_data"])
def test_s4_release_tree(trees, tmp_path, where):
    rows, shard = _manifest_and_extract(tmp_path, "avsbench_s4", trees / where)
    assert sorted(r.video_id for r in rows) == sorted(f"{c}/{n}" for n, c, _ in S4_VIDEOS)
    with ShardReader(shard) as reader:
        assert sorted(reader.video_ids()) == sorted(r.video_id for r in rows)
        for row in rows:
            gt, valid = reader.read(row.video_id, "gt_masks"), reader.read(row.video_id, "gt_valid")
            assert valid.tolist() == ([True] + [False] * 4 if row.split == "train" else [True] * 5)
            cat, name = row.video_id.split("/")
            for t in np.flatnonzero(valid):
                path = trees / "Single-source/s4_data/gt_masks" / row.split / cat / name / f"{name}_{t + 1}.png"
                assert gt[t].tobytes() == official_s4_mask(path, SIZE).tobytes()


@pytest.mark.parametrize("where", ["Multi-sources", "Multi-sources/ms3_data"])
def test_ms3_release_tree(trees, tmp_path, where):
    rows, shard = _manifest_and_extract(tmp_path, "avsbench_ms3", trees / where)
    assert sorted(r.video_id for r in rows) == sorted(v for v, _ in MS3_VIDEOS)
    with ShardReader(shard) as reader:
        for row in rows:
            gt, valid = reader.read(row.video_id, "gt_masks"), reader.read(row.video_id, "gt_valid")
            assert valid.all() and reader.read(row.video_id, "frames").shape == (5, *SIZE, 3)
            for t in range(5):
                path = (
                    trees / "Multi-sources/ms3_data/gt_masks" / row.split / row.video_id / f"{row.video_id}_{t + 1}.png"
                )
                assert gt[t].tobytes() == official_ms3_mask(path, SIZE).tobytes()


def test_avss_release_tree(trees, tmp_path):
    rows, shard = _manifest_and_extract(tmp_path, "avsbench_semantic", trees / "AVSBench_semantic")
    assert sorted(r.video_id for r in rows) == sorted(f"{lab}/{uid}" for uid, lab, _ in AVSS_VIDEOS)
    with ShardReader(shard) as reader:
        for row in rows:
            label, uid = row.video_id.split("/")
            num = 10 if label == "v2" else 5
            assert row.num_seconds == num and row.frame_fit == ("crop" if row.split == "train" else "stretch")
            valid = reader.read(row.video_id, "gt_valid")
            assert valid.tolist() == ([True] + [False] * 4 if (label, row.split) == ("v1s", "train") else [True] * num)
            gt = reader.read(row.video_id, "gt_masks")
            for t in np.flatnonzero(valid):
                path = trees / "AVSBench_semantic" / label / uid / "labels_rgb" / f"{t}.png"
                official = official_avss_label(path, SIZE, row.split)
                decoded = labels.read_label(path, "voc_rgb", SIZE, fit=row.frame_fit)
                assert np.array_equal(gt[t], official) and np.array_equal(decoded.ids, official)
                assert decoded.unknown_pixels > 0 and gt[t].max() < labels.NUM_AVSS_CLASSES
    warned = {
        f["video_id"]
        for f in read_failures(shard.with_suffix(".failures.csv"))
        if f["level"] == "warning" and "outside the 71-class palette" in f["reason"]
    }
    assert warned == {r.video_id for r in rows}  # every video has a patch of an unknown colour


def test_avss_train_frames_are_centre_cropped(trees, tmp_path):
    """Train frames: short side to the frame size + centre crop (BILINEAR), as the official train loader."""
    rows, shard = _manifest_and_extract(tmp_path, "avsbench_semantic", trees / "AVSBench_semantic")
    row = next(r for r in rows if r.video_id == "v1m/u3m")  # portrait 48x80 frames, train
    with ShardReader(shard) as reader:
        frames = reader.read(row.video_id, "frames")
    img = Image.open(trees / "AVSBench_semantic" / "v1m" / "u3m" / "frames" / "0.jpg").convert("RGB")
    scaled = img.resize((SIZE[1], int(1.0 * 80 * SIZE[1] / 48)), Image.BILINEAR)
    y1 = int(round((scaled.size[1] - SIZE[0]) / 2.0))
    assert np.array_equal(frames[0], np.asarray(scaled)[y1 : y1 + SIZE[0]])


def test_crop_fit_matches_the_official_train_geometry():
    img = Image.fromarray(np.arange(48 * 80, dtype=np.uint32).reshape(48, 80).astype(np.uint8))
    out = labels.fit_image(img, (32, 32), "crop", is_label=True)
    assert out.size == (32, 32)
    scaled = img.resize((int(1.0 * 80 * 32 / 48), 32), Image.NEAREST)  # short side 32, long side 53
    x1 = int(round((scaled.size[0] - 32) / 2.0))
    assert np.array_equal(np.asarray(out), np.asarray(scaled)[:, x1 : x1 + 32])


def test_no_readable_video_exits_1_with_one_line(tmp_path, capsys):
    top = tmp_path / "Single-source"
    _csv(
        top / "s4_meta_data.csv",
        ["name", "start", "category", "split"],
        [["x", 0, "cat", "test"], ["y", 0, "cat", "test"]],
    )
    (top / "s4_data").mkdir()
    params = _params(tmp_path, "avsbench_s4", top)
    assert main(["manifest", "--params", str(params), "--dataset", "ds", "--no-progress"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "ds" in err[0] and "frame image missing (5 of 5) (2 of 2)" in err[0]


def test_meta_csv_not_found_names_both_choices(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    params = _params(tmp_path, "avsbench_ms3", tmp_path / "empty")
    assert main(["manifest", "--params", str(params), "--dataset", "ds", "--no-progress"]) == 2
    assert "ms3_meta_data.csv" in capsys.readouterr().err


def test_raw_video_used_when_frames_are_absent(trees, tmp_path, make_video):
    """media: auto takes the raw video where AVSBench's preprocessing reads it when no frames exist."""
    top = tmp_path / "Single-source"
    _csv(top / "s4_meta_data.csv", ["name", "start", "category", "split"], [["rv", 0, "cat", "test"]])
    make_video("rv.mp4", folder=_mk(top / "s4_data" / "raw_videos" / "test" / "cat" / "x").parent)
    rows, _ = _manifest_and_extract(tmp_path, "avsbench_s4", top)
    assert rows[0].source_video.endswith("raw_videos/test/cat/rv.mp4") and not rows[0].source_frames


# ---------------------------------------------------------------- editing a label
def _slices(tmp: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((tmp / "data" / "ds" / "manifest").glob("shard-*.csv"))}


def test_editing_one_label_changes_one_slice_and_the_extracted_mask(tmp_path):
    """The extraction stores the decoded labels, so a label PNG is part of what its shard slice (the DVC
    dependency of ``extract@D-S``) changes with: one edited mask changes one slice, and the extraction of
    that shard then writes the new mask. Extracting with the old manifest fails that video alone."""
    params = _params(tmp_path, "avsbench_s4", build_s4(tmp_path / "tree"), shards=3)
    manifest = ["manifest", "--params", str(params), "--dataset", "ds", "--no-progress"]
    assert main(manifest) == 0
    before = _slices(tmp_path)
    row = next(r for r in read_manifest(tmp_path / "manifests" / "ds.csv") if r.split == "test")
    extract = ["extract", "--params", str(params), "--dataset", "ds", "--shard", str(row.shard), "--no-progress"]
    shard = tmp_path / "data" / "ds" / "extract" / f"shard-{row.shard}.h5"
    assert main(extract) == 0
    with ShardReader(shard) as reader:
        old_gt = reader.read(row.video_id, "gt_masks")[1]
    label = Path(row.labels[1])
    _png(label, 255 - np.asarray(Image.open(label)))  # the mask inverted: same size, same name

    assert main(extract) == 0  # the manifest still describes the old mask: this video fails, the others are written
    failed = [f for f in read_failures(shard.with_suffix(".failures.csv")) if f["level"] == "error"]
    assert [f["video_id"] for f in failed] == [row.video_id] and "label images changed" in failed[0]["reason"]

    assert main(manifest) == 0
    after = _slices(tmp_path)
    assert len(after) == 3 and [name for name in before if before[name] != after[name]] == [f"shard-{row.shard}.csv"]
    assert main(extract) == 0
    with ShardReader(shard) as reader:
        new_gt = reader.read(row.video_id, "gt_masks")[1]
    assert new_gt.tobytes() == official_s4_mask(label, SIZE).tobytes() and not np.array_equal(new_gt, old_gt)
