"""COMBO's published maskige trees as a per-dataset maskige source (``proposals.maskige_trees``).

The trees are written here the way COMBO's own scripts write them (yannqi/COMBO-AVS), not by our
generator:

* ``avs_tools/pre_mask2rgb/mask_precess_s4.py`` / ``_ms3.py``: masks sorted by area, label map
  ``m = where(m == 0, mask * (idx + 1), m)`` as uint8, resized NEAREST to 224x224, ``putpalette`` with the
  150-row ADE20K palette, saved as ``{npy name}_color.png`` under
  ``{save_dir}/AVSBench_object/Single-source/s4_data/pre_SAM_mask/{split}/{category}/{name}/`` and
  ``{save_dir}/AVSBench_object/Multi-sources/ms3_data/pre_SAM_mask/{video}/``; ``make_SAM_mask.py`` names
  the npy ``{frame}_mask.npy``, so the PNGs are the ``{frame}_mask_color.png`` the registration reads.
* ``mask_precess_ss.py``: the same label map at the frame's own size (no resize), under
  ``AVSBench_semantic/{label}/{uid}/frames/{i}_mask_color.png``.
* ``process_avssimg2fixsize.py``: those ``frames/`` PNGs ``convert("RGB")``, train ``crop_resize_img``
  (short side 224 + centre crop, NEAREST), others resized to 224x224 NEAREST, saved under
  ``processed_frames/`` with the same name (the path COMBO's AVSS registration reads).

COMBO's loader reads a maskige with detectron2 ``read_image(path, "RGB")``, i.e. PIL ``convert("RGB")``:
:func:`combo_loader_view` is the expected value.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_release_trees import AVSS_VIDEOS, MS3_VIDEOS, S4_VIDEOS, build_avss, build_ms3, build_s4

from pipeline.code_digest import write_code_digests
from pipeline.failures import read_failures
from pipeline.feature_record import read_record
from pipeline.params import ParamsError, from_section
from pipeline.proposals import build_backend, list_backends
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.palette import ade20k_palette
from pipeline.proposals.precomputed import (
    FrameGeometry,
    PrecomputedError,
    combo_recipe,
    maskige_tree,
    read_maskige,
)
from pipeline.proposals.sources import ComboMaskigeTree, ComputedMaskiges, ProposalStageParams, maskige_source
from pipeline.shards import ShardReader
from pipeline.tree_stamp import stamp_tree, write_stamp
from stages.cli import main

REPO = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(5)
COMBO = (224, 224)


# ---------------------------------------------------------------- COMBO's scripts, written out
def combo_label_map(masks: np.ndarray) -> np.ndarray:
    """mask_precess_*.py: sorted by area, each later (larger) mask fills only still-empty pixels, uint8."""
    ordered = masks[np.argsort(masks.reshape(len(masks), -1).sum(1))].astype(np.uint8)
    m = ordered[0]
    for idx in range(1, len(ordered)):
        m = np.where(m == 0, ordered[idx] * (idx + 1), m)
    return m.astype(np.uint8)


def write_combo_png(path: Path, masks: np.ndarray, to_224: bool = True) -> None:
    """mask_precess_s4/ms3 (``to_224``) or mask_precess_ss (frame size). COMBO passes the palette as a
    uint8 [150,3] array, which the Pillow of its time took as its bytes."""
    img = Image.fromarray(combo_label_map(masks))
    if to_224:
        img = img.resize(COMBO, Image.NEAREST)
    img.putpalette(ade20k_palette().astype(np.uint8).tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def combo_fix_size(frames_png: Path, out_png: Path, split: str) -> None:
    """process_avssimg2fixsize.py on one maskige: RGB, train crop_resize_img else resize_img, NEAREST."""
    img = Image.open(frames_png).convert("RGB")
    if split == "train":
        w, h = img.size
        if w > h:
            oh, ow = 224, int(1.0 * w * 224 / h)
        else:
            ow, oh = 224, int(1.0 * h * 224 / w)
        img = img.resize((ow, oh), Image.NEAREST)
        x1, y1 = int(round((ow - 224) / 2.0)), int(round((oh - 224) / 2.0))
        img = img.crop((x1, y1, x1 + 224, y1 + 224))
    else:
        img = img.resize(COMBO, Image.NEAREST)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    img.save(out_png)


def combo_loader_view(path: Path) -> np.ndarray:
    """What COMBO's dataset mapper gets: detectron2 read_image(path, format="RGB")."""
    return np.asarray(Image.open(path).convert("RGB"))


def random_masks(h: int, w: int, k: int = 4) -> np.ndarray:
    masks = np.zeros((k, h, w), bool)
    for i in range(k):
        y, x = RNG.integers(0, h - 6), RNG.integers(0, w - 6)
        masks[i, y : y + RNG.integers(4, h // 2), x : x + RNG.integers(4, w // 2)] = True
    return masks


def many_masks(h: int, w: int, k: int = 160) -> np.ndarray:
    """k one-pixel masks: labels up to k, past the 150-row palette (COMBO's uint8 maps reach 255)."""
    masks = np.zeros((k, h, w), bool)
    for i in range(k):
        masks[i, h // 2 - 2 + (i // w) % 4, i % w] = True  # mid-frame rows: inside a centre crop too
    return masks


# ---------------------------------------------------------------- the trees
def build_combo_trees(root: Path) -> dict[str, Path]:
    """COMBO's maskiges of the release trees of test_release_trees, as its scripts lay them out under
    its ``AVS_dataset/`` root. AVSS: u1s, u3m in ``frames/`` only; u2s, u4v, u5v in ``processed_frames/``."""
    s4 = root / "AVSBench_object" / "Single-source" / "s4_data" / "pre_SAM_mask"
    for name, category, split in S4_VIDEOS:
        for k in range(1, 6):
            masks = many_masks(40, 40) if (name, k) == ("aaa_0", 2) else random_masks(40, 40)
            write_combo_png(s4 / split / category / name / f"{name}_{k}_mask_color.png", masks)
    ms3 = root / "AVSBench_object" / "Multi-sources" / "ms3_data" / "pre_SAM_mask"
    for video, _ in MS3_VIDEOS:
        for k in range(1, 6):
            write_combo_png(ms3 / video / f"{video}.mp4_{k}_mask_color.png", random_masks(40, 40))
    avss = root / "AVSBench_semantic" / "pre_SAM_mask" / "AVSBench_semantic"
    for uid, label, split in AVSS_VIDEOS:
        folder, (h, w) = avss / label / uid, ((48, 80) if label != "v1m" else (80, 48))
        for i in range(10 if label == "v2" else 5):
            masks = many_masks(h, w) if (uid, i) == ("u3m", 1) else random_masks(h, w)
            write_combo_png(folder / "frames" / f"{i}_mask_color.png", masks, to_224=False)
            if uid not in ("u1s", "u3m"):
                combo_fix_size(
                    folder / "frames" / f"{i}_mask_color.png",
                    folder / "processed_frames" / f"{i}_mask_color.png",
                    split,
                )
    return {"s4": s4, "ms3": ms3, "avss": avss}


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    """One params.yaml with S4, MS3 and AVSS release trees and their COMBO maskige trees; manifest and
    extract run for all three (frames at COMBO's 224, two shards)."""
    tmp = tmp_path_factory.mktemp("combo")
    release = tmp / "release"
    tops = {"s4": build_s4(release), "ms3": build_ms3(release), "avss": build_avss(release)}
    trees = build_combo_trees(tmp / "AVS_dataset")
    sources = {"s4": "avsbench_s4", "ms3": "avsbench_ms3", "avss": "avsbench_semantic"}
    params = {
        "data": {"root": str(tmp / "data"), "manifests": str(tmp / "m"), "datasets": list(tops), "shards": [0, 1]},
        "dask": {"n_workers": 0},
        "manifest": {"datasets": {d: {"source": sources[d], "root": str(t)} for d, t in tops.items()}},
        "extract": {"frame_size": list(COMBO)},
        "proposals": {"datasets": [], "maskige_trees": {d: str(t) for d, t in trees.items()}},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    for dataset in tops:
        assert main(["manifest", "--params", str(path), "--dataset", dataset, "--no-progress"]) == 0
        for shard in (0, 1):
            argv = ["extract", "--params", str(path), "--dataset", dataset, "--shard", str(shard), "--no-progress"]
            assert main(argv) == 0
    return tmp, path, trees


def _shards(tmp: Path, dataset: str) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for shard in (0, 1):
        with ShardReader(tmp / "data" / dataset / "proposals" / f"shard-{shard}.h5") as reader:
            attrs = reader.file_attrs()
            assert attrs["backend"] == "combo_pre_sam_mask" and attrs["dataset"] == dataset
            assert read_record("proposals", attrs["proposals_params"], dataset) == combo_recipe()  # COMBO's recipe
            for video_id in reader.video_ids():
                found[video_id] = {k: reader.read(video_id, k) for k in ("maskige", "mask_counts", "dropped_masks")}
    return found


def _warnings(tmp: Path, dataset: str) -> list[dict[str, str]]:
    rows = []
    for shard in (0, 1):
        rows += read_failures(tmp / "data" / dataset / "proposals" / f"shard-{shard}.failures.csv")
    assert all(r["level"] == "warning" for r in rows), rows
    return rows


# ---------------------------------------------------------------- tests
def test_precomputed_is_no_longer_a_backend():
    assert "precomputed" not in list_backends()
    with pytest.raises(ValueError, match="unknown proposal backend 'precomputed'; known proposal backends"):
        build_backend("precomputed", ProposalParams())


def test_each_dataset_names_its_source():
    params = from_section(
        ProposalStageParams, {"datasets": ["demo_s4"], "maskige_trees": {"combo_s4": "trees/s4"}}, "proposals"
    )
    assert isinstance(maskige_source(params, "combo_s4", None), ComboMaskigeTree)
    computed = maskige_source(params, "demo_s4", None)
    assert isinstance(computed, ComputedMaskiges) and type(computed.params) is ProposalParams
    with pytest.raises(ParamsError, match="both list"):
        from_section(ProposalStageParams, {"datasets": ["a"], "maskige_trees": {"a": "t"}}, "proposals")
    with pytest.raises(ParamsError, match="maskige_trees"):
        from_section(ProposalStageParams, {"maskige_trees": {"../x": "t"}}, "proposals")


def test_one_dag_reads_combo_maskiges_of_s4_ms3_and_avss(dag):
    tmp, params, trees = dag
    for dataset in trees:
        assert main(["proposals", "--params", str(params), "--dataset", dataset, "--all-shards", "--no-progress"]) == 0
    s4, ms3, avss = _shards(tmp, "s4"), _shards(tmp, "ms3"), _shards(tmp, "avss")
    assert sorted(s4) == sorted(f"{c}/{n}" for n, c, _ in S4_VIDEOS)
    assert sorted(ms3) == sorted(v for v, _ in MS3_VIDEOS) and sorted(avss) == sorted(
        f"{lb}/{u}" for u, lb, _ in AVSS_VIDEOS
    )
    for name, category, split in S4_VIDEOS:  # frames at 224: byte-equal to what COMBO's loader reads
        for k in range(1, 6):
            png = trees["s4"] / split / category / name / f"{name}_{k}_mask_color.png"
            assert np.array_equal(s4[f"{category}/{name}"]["maskige"][k - 1], combo_loader_view(png))
    for video, _ in MS3_VIDEOS:
        for k in range(1, 6):
            png = trees["ms3"] / video / f"{video}.mp4_{k}_mask_color.png"
            assert np.array_equal(ms3[video]["maskige"][k - 1], combo_loader_view(png))
    for uid, label, split in AVSS_VIDEOS:
        for i, maskige in enumerate(avss[f"{label}/{uid}"]["maskige"]):
            processed = trees["avss"] / label / uid / "processed_frames" / f"{i}_mask_color.png"
            if uid in ("u1s", "u3m"):  # frames/ form: fitted here exactly as process_avssimg2fixsize.py would
                combo_fix_size(trees["avss"] / label / uid / "frames" / f"{i}_mask_color.png", processed, split)
            assert np.array_equal(maskige, combo_loader_view(processed)), (uid, i)
            if uid in ("u1s", "u3m"):
                shutil.rmtree(processed.parent)


def test_labels_beyond_the_palette_read_as_combo_reads_them(dag):
    tmp, params, trees = dag
    for dataset in ("s4", "avss"):
        assert main(["proposals", "--params", str(params), "--dataset", dataset, "--all-shards", "--no-progress"]) == 0
    s4, avss = _shards(tmp, "s4")["dog_barking/aaa_0"], _shards(tmp, "avss")["v1m/u3m"]
    for arrays, frame in ((s4, 1), (avss, 1)):
        black = np.all(arrays["maskige"][frame] == 0, axis=-1)
        assert black.any() and arrays["dropped_masks"].tolist() == [int(t == frame) for t in range(5)]
        assert arrays["mask_counts"][frame] > 100
    for dataset, video in (("s4", "dog_barking/aaa_0"), ("avss", "v1m/u3m")):
        rows = _warnings(tmp, dataset)
        assert [r["video_id"] for r in rows] == [video] and "beyond the 150-row palette" in rows[0]["reason"]


def test_any_folder_above_a_tree_names_it(dag):
    """COMBO's AVS_dataset/ root, the release-like folders and the tree itself all find the same tree."""
    tmp, _, trees = dag
    root = tmp / "AVS_dataset"
    for task, tree in trees.items():
        assert maskige_tree(root, task) == tree and maskige_tree(tree, task) == tree
    assert maskige_tree(root / "AVSBench_object" / "Single-source", "s4") == trees["s4"]
    assert maskige_tree(root / "AVSBench_semantic", "avss") == trees["avss"]
    with pytest.raises(PrecomputedError, match="not task 'raw'"):
        maskige_tree(root, "raw")


def test_bad_maskiges_fail_their_video_with_the_file_named(dag, tmp_path):
    tmp, params, trees = dag
    data = tmp_path / "data"
    shutil.copytree(tmp / "data" / "ms3", data / "ms3")
    tree = tmp_path / "ms3_tree"
    shutil.copytree(trees["ms3"], tree)
    (tree / "m_000" / "m_000.mp4_3_mask_color.png").unlink()
    wrong = ade20k_palette()
    wrong[3] = (1, 2, 3)
    Image.fromarray(np.full((224, 224, 3), 7, np.uint8)).save(tree / "m_001" / "m_001.mp4_2_mask_color.png")
    bad = Image.fromarray(np.zeros((224, 224), np.uint8))
    bad.putpalette(wrong.tobytes())
    bad.save(tree / "m_002" / "m_002.mp4_5_mask_color.png")
    mine = yaml.safe_load(params.read_text())
    mine["data"]["root"] = str(data)
    mine["proposals"]["maskige_trees"] = {"ms3": str(tree)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(mine))
    argv = ["proposals", "--params", str(tmp_path / "params.yaml"), "--dataset", "ms3", "--all-shards", "--no-progress"]
    assert main(argv) == 1  # nothing written (every video failed): exit 1, each reason on its own row
    reasons = {}
    for shard in (0, 1):
        for row in read_failures(data / "ms3" / "proposals" / f"shard-{shard}.failures.csv"):
            reasons[row["video_id"]] = row["reason"]
    assert "m_000.mp4_3_mask_color.png: maskige missing" in reasons["m_000"]
    assert "m_001.mp4_2_mask_color.png: colour (7, 7, 7) is not in the ADE20K palette" in reasons["m_001"]
    assert "m_002.mp4_5_mask_color.png: palette is not the ADE20K palette" in reasons["m_002"]


def test_frame_size_maskiges_are_checked_against_the_frame(tmp_path):
    png = tmp_path / "0_mask_color.png"
    write_combo_png(png, random_masks(48, 80), to_224=False)
    maskige, *_ = read_maskige(png, FrameGeometry((224, 224), "stretch", (48, 80)))
    assert maskige.shape == (224, 224, 3)
    with pytest.raises(PrecomputedError, match="size 80x48, expected 224x224 .* frame's own 90x60"):
        read_maskige(png, FrameGeometry((224, 224), "stretch", (60, 90)))
    Image.fromarray(np.full((50, 50, 3), 7, np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(PrecomputedError, match="colour \\(7, 7, 7\\) is not in the ADE20K palette"):
        read_maskige(tmp_path / "b.png", FrameGeometry((32, 32)))


def _dvc(cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stamp_trees(tmp_path: Path, trees: dict[str, Path]) -> None:
    """What ``dvc repro`` does first: the always-changed stage stamps/dvc.yaml:trees restamps each tree."""
    for dataset, tree in trees.items():
        write_stamp(stamp_tree(tree.relative_to(tmp_path)), tmp_path / "data/stamps" / dataset / "maskige_tree.json")


COMBO_STAGE = "features/proposals/dvc.yaml:combo_maskiges"  # as DVC names a stage of another pipeline file


def test_editing_one_png_reruns_only_its_dataset(tmp_path, monkeypatch):
    """The real stages (combo_maskiges of features/proposals/dvc.yaml, trees of stamps/dvc.yaml): each
    dataset's tree stamp is a dependency of that dataset's item only."""
    monkeypatch.chdir(tmp_path)
    proposals = yaml.safe_load((REPO / "features" / "proposals" / "dvc.yaml").read_text())
    combo = {"combo_maskiges": proposals["stages"]["combo_maskiges"]}
    (tmp_path / "features" / "proposals").mkdir(parents=True)
    (tmp_path / "features" / "proposals" / "dvc.yaml").write_text(yaml.safe_dump({**proposals, "stages": combo}))
    stamps = yaml.safe_load((REPO / "stamps" / "dvc.yaml").read_text())
    stamp = stamps["stages"]["trees"]
    stamp["deps"] = [d for d in stamp["deps"] if not d.startswith("data/raw/demo/")]  # no demo_data
    (tmp_path / "stamps").mkdir()
    (tmp_path / "stamps" / "dvc.yaml").write_text(yaml.safe_dump({**stamps, "stages": {"trees": stamp}}))
    for code in ("pipeline", "stages"):
        shutil.copytree(REPO / code, tmp_path / code, ignore=shutil.ignore_patterns("__pycache__"))
    trees = {}
    for dataset in ("s4", "ms3"):
        trees[dataset] = tmp_path / "combo" / dataset / "pre_SAM_mask"
        write_combo_png(trees[dataset] / "v" / "v.mp4_1_mask_color.png", random_masks(40, 40))
        for folder in ("manifest", "extract", "proposals"):
            (tmp_path / "data" / dataset / folder).mkdir(parents=True)
            (tmp_path / "data" / dataset / folder / "shard-0.x").write_text(folder)
    params = {
        "data": {"shards": [0]},
        "manifest": {"datasets": {}},
        "proposals": {"maskige_trees": {d: str(t.relative_to(tmp_path)) for d, t in trees.items()}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc(tmp_path, "init", "--no-scm", "-q")
    _stamp_trees(tmp_path, trees)
    code = {"tree-stamp": "stages.tree_stamp", "proposals": "stages.proposals"}  # the stages' code deps
    write_code_digests(tmp_path, code, tmp_path / "data" / "code")
    _dvc(tmp_path, "commit", "-f", "-q", "stamps/dvc.yaml:trees", COMBO_STAGE)  # as if every item ran
    status = _dvc(tmp_path, "status")
    assert "combo_maskiges" not in status  # only the stamps, always changed
    write_combo_png(trees["ms3"] / "v" / "v.mp4_1_mask_color.png", random_masks(40, 40, k=6))
    _stamp_trees(tmp_path, trees)
    status = _dvc(tmp_path, "status")
    assert "combo_maskiges@ms3" in status and "combo_maskiges@s4" not in status
