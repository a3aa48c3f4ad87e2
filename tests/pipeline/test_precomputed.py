"""COMBO's published maskige PNG trees read into proposals shards (``proposals.backend: precomputed``).

The trees are written here the way COMBO's ``avs_tools/pre_mask2rgb`` scripts write them: masks
sorted by area, label map (1 + area rank, 0 uncovered) as uint8, resized NEAREST to 224x224,
``putpalette`` with the ADE20K palette, saved as ``{frame}_mask_color.png`` where COMBO's dataset
registration reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.proposals import build_backend, list_backends
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.palette import ade20k_palette
from pipeline.proposals.precomputed import PrecomputedError, precomputed_shard, read_maskige
from pipeline.shards import ShardReader, ShardWriter

SIZE = (32, 32)
RNG = np.random.default_rng(5)


def combo_label_map(masks: np.ndarray) -> np.ndarray:
    """COMBO's loop: sorted by area, each later (larger) mask fills only still-empty pixels."""
    order = np.argsort(masks.reshape(len(masks), -1).sum(1))
    ordered = masks[order].astype(np.uint8)
    m = ordered[0].copy()
    for idx in range(1, len(ordered)):
        m = np.where(m == 0, ordered[idx] * (idx + 1), m)
    return m.astype(np.uint8)


def write_combo_maskige(path: Path, masks: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(combo_label_map(masks)).resize((224, 224), Image.NEAREST)
    img.putpalette((ade20k_palette() if palette is None else palette).astype(np.uint8).ravel().tolist())
    img.save(path)
    return np.asarray(img)


def random_masks(k: int = 4, h: int = 60, w: int = 90) -> np.ndarray:
    masks = np.zeros((k, h, w), bool)
    for i in range(k):
        y, x = RNG.integers(0, h - 10), RNG.integers(0, w - 10)
        masks[i, y : y + RNG.integers(5, h // 2), x : x + RNG.integers(5, w // 2)] = True
    return masks


def _extract_shard(path: Path, videos: list[tuple[str, str, str, int]]) -> None:
    """A minimal extraction shard: frames uint8 [T,H,W,3] and the task/split attributes."""
    with ShardWriter(path, kind="extract", params_hash="x") as writer:
        for video_id, task, split, num in videos:
            writer.write_video(
                video_id, {"frames": np.zeros((num, *SIZE, 3), np.uint8)}, {"task": task, "split": split}
            )


def _nearest(label: np.ndarray, size) -> np.ndarray:
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))


def test_registered():
    assert "precomputed" in list_backends()
    backend = build_backend("precomputed", ProposalParams(backend="precomputed", checkpoint="somewhere"))
    with pytest.raises(PrecomputedError, match="per video"):
        backend.propose(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PrecomputedError, match="proposals.checkpoint"):
        build_backend("precomputed", ProposalParams(backend="precomputed"))


def test_s4_ms3_avss_trees_become_a_proposals_shard(tmp_path):
    s4 = tmp_path / "Single-source" / "s4_data" / "pre_SAM_mask"
    ms3 = tmp_path / "Multi-sources" / "ms3_data" / "pre_SAM_mask"
    avss = tmp_path / "AVSBench_semantic" / "pre_SAM_mask" / "AVSBench_semantic"
    expected: dict[str, list[np.ndarray]] = {}
    for k in range(1, 6):
        expected.setdefault("dog/a1", []).append(
            write_combo_maskige(s4 / "train" / "dog" / "a1" / f"a1_{k}_mask_color.png", random_masks())
        )
        expected.setdefault("m1", []).append(
            write_combo_maskige(ms3 / "m1" / f"m1.mp4_{k}_mask_color.png", random_masks())
        )
        expected.setdefault("v1m/u1", []).append(
            write_combo_maskige(avss / "v1m" / "u1" / "processed_frames" / f"{k - 1}_mask_color.png", random_masks())
        )
    # one S4 video misses frame 3: a per-video failure, the others are written
    for k in (1, 2, 4, 5):
        write_combo_maskige(s4 / "test" / "cat" / "b2" / f"b2_{k}_mask_color.png", random_masks())
    palette = ade20k_palette()
    for video_id, task, root in (
        ("dog/a1", "s4", tmp_path / "Single-source"),
        ("m1", "ms3", tmp_path / "Multi-sources"),
        ("v1m/u1", "avss", tmp_path / "AVSBench_semantic"),
    ):
        extract = tmp_path / f"{task}.h5"
        videos = [(video_id, task, "train", 5)] + ([("cat/b2", "s4", "test", 5)] if task == "s4" else [])
        _extract_shard(extract, videos)
        out = tmp_path / f"{task}-proposals.h5"
        failures = precomputed_shard(
            extract, out, ProposalParams(backend="precomputed", checkpoint=str(root)), progress=False
        )
        with ShardReader(out) as reader:
            assert reader.video_ids() == [video_id]
            maskige = reader.read(video_id, "maskige")
            assert maskige.shape == (5, *SIZE, 3)
            for t, label in enumerate(expected[video_id]):
                assert np.array_equal(maskige[t], palette[_nearest(label, SIZE)])
            small = [_nearest(label, SIZE) for label in expected[video_id]]
            assert reader.read(video_id, "mask_counts").tolist() == [
                len(set(np.unique(s).tolist()) - {0}) for s in small
            ]
        if task == "s4":
            assert [f.video_id for f in failures.errors] == ["cat/b2"] and "b2_3_mask_color.png" in failures.errors[
                0
            ].reason
        else:
            assert not failures.rows


def test_data_folder_or_mask_folder_as_root(tmp_path):
    write_combo_maskige(
        tmp_path / "s4_data" / "pre_SAM_mask" / "val" / "c" / "v" / "v_1_mask_color.png", random_masks()
    )
    extract = tmp_path / "x.h5"
    _extract_shard(extract, [("c/v", "s4", "val", 1)])
    for root in (tmp_path / "s4_data", tmp_path / "s4_data" / "pre_SAM_mask"):
        failures = precomputed_shard(
            extract, tmp_path / "p.h5", ProposalParams(backend="precomputed", checkpoint=str(root)), progress=False
        )
        assert not failures.rows


def test_palette_and_size_are_checked(tmp_path):
    wrong = ade20k_palette().copy()
    wrong[3] = (1, 2, 3)
    write_combo_maskige(tmp_path / "a.png", random_masks(), palette=wrong)
    with pytest.raises(PrecomputedError, match="ADE20K"):
        read_maskige(tmp_path / "a.png", SIZE)
    Image.fromarray(np.full((50, 50, 3), 7, np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(PrecomputedError, match="not in the ADE20K palette"):
        read_maskige(tmp_path / "b.png", SIZE)
    rgb = ade20k_palette()[np.zeros((50, 60), np.int64)]
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(PrecomputedError, match="size 60x50"):
        read_maskige(tmp_path / "c.png", SIZE)
    Image.fromarray(ade20k_palette()[np.ones(SIZE, np.int64)]).save(tmp_path / "d.png")  # RGB copy, frame size
    maskige, count = read_maskige(tmp_path / "d.png", SIZE)
    assert count == 1 and (maskige == ade20k_palette()[1]).all()


def test_proposals_stage_with_the_precomputed_backend(tmp_path):
    """``avs manifest`` + ``avs extract`` + ``avs proposals`` on an S4 release tree with COMBO's maskiges."""
    import wave

    import yaml

    from pipeline.failures import read_failures
    from stages.cli import main

    top = tmp_path / "Single-source"
    data = top / "s4_data"
    top.mkdir()
    (top / "s4_meta_data.csv").write_text("name,start,category,split\nv1,0,dog,test\nv2,0,dog,test\n")
    for name in ("v1", "v2"):
        for k in range(1, 6):
            frame = data / "visual_frames" / "test" / "dog" / name / f"{name}_{k}.png"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(RNG.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(frame)
            if name == "v1" or k != 4:  # v2 lacks the maskige of frame 4
                write_combo_maskige(
                    data / "pre_SAM_mask" / "test" / "dog" / name / f"{name}_{k}_mask_color.png", random_masks()
                )
        wav = data / "audio_wav" / "test" / "dog" / f"{name}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(wav), "wb") as fh:
            fh.setnchannels(1), fh.setsampwidth(2), fh.setframerate(16000)
            fh.writeframes(np.zeros(5 * 16000, "<i2").tobytes())
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "root": str(tmp_path / "data"),
                    "manifests": str(tmp_path / "m"),
                    "datasets": ["s4"],
                    "shards": [0],
                },
                "dask": {"n_workers": 0},
                "manifest": {"datasets": {"s4": {"source": "avsbench_s4", "root": str(top)}}},
                "extract": {"frame_size": list(SIZE)},
                "proposals": {"backend": "precomputed", "checkpoint": str(top)},
            }
        )
    )
    for argv in (["manifest"], ["extract", "--shard", "0"], ["proposals", "--shard", "0"]):
        assert main([argv[0], "--params", str(params), "--dataset", "s4", "--no-progress", *argv[1:]]) == 0
    out = tmp_path / "data" / "s4" / "proposals" / "shard-0.h5"
    with ShardReader(out) as reader:
        assert reader.video_ids() == ["dog/v1"] and reader.read("dog/v1", "maskige").shape == (5, *SIZE, 3)
    failed = read_failures(out.with_suffix(".failures.csv"))
    assert [f["video_id"] for f in failed] == ["dog/v2"] and "v2_4_mask_color.png" in failed[0]["reason"]
