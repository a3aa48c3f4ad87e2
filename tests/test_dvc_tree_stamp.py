"""DVC sees a release tree through its stamp (``stamps/dvc.yaml:trees``, docs/pipeline.md "Source-tree stamps").

A small real project (this repository's code, its pipeline stages up to ``extract``, a tiny S4 tree
written by ``benchmarks/avsbench_full.py``, two shards) is reproduced, then changed the ways a user
changes a tree; DVC itself says what reruns:

* nothing changed: only the stamp stage runs (it always does), nothing after it;
* a label touched (same bytes, new mtime): the stamp changes, the manifest reruns and writes the same
  bytes, so no extract item reruns;
* a label's content changed: the manifest and the extract item of that video's shard rerun;
* a video added: the manifest reruns;
* a source file only ``avs extract`` imports edited: the code digests are rewritten and the extract items
  rerun, nothing else (docs/pipeline.md, "Code digests").

The stamp stage lives in its own pipeline file (stamps/dvc.yaml), so the no-op ``dvc repro`` that runs
them rewrites only its lock: the root dvc.lock keeps its bytes and its mtime.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_dvc_remote import _dvc, _run, _stages_run, _status, copy_code

REPO = Path(__file__).resolve().parents[1]
RAW = "data/raw/tiny"
TREE = f"{RAW}/Single-source"
STAMPS = "stamps/dvc.yaml"
STAMP = f"{STAMPS}:trees"  # DVC's name of the tree-stamp stage
CODE = f"{STAMPS}:code_digest"  # the code digests every stage depends on
EXTRACT = "features/extract/dvc.yaml"
X = f"{EXTRACT}:extract"  # DVC's name of the extract stage, in its own pipeline file
# The raw-data end of the DAG, after the stamp: pipeline file -> its stages taken
STAGES = {"dvc.yaml": ("demo_data", "manifest"), EXTRACT: ("extract",)}


def _params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"] |= {"s4_videos": [0, 0, 0], "ms3_videos": [0, 0, 0], "avss_videos": [0, 0, 0]}
    params["data"] |= {"datasets": ["tiny_s4"], "shards": [0, 1]}
    params["dask"] |= {"n_workers": 0}
    params["manifest"]["datasets"] = {"tiny_s4": {"source": "avsbench_s4", "root": TREE}}
    params["extract"] |= {"frame_size": [32, 32]}
    params["proposals"] |= {"datasets": [], "maskige_trees": {}}
    return params


def _make_project(root: Path, stages: dict[str, tuple[str, ...]] = STAGES) -> Path:
    """This repository's code, ``stages`` of its pipeline files, stamps/dvc.yaml's trees, a tiny S4 tree."""
    copy_code(root)
    for file, names in {**stages, STAMPS: ("code_digest", "trees")}.items():
        spec = yaml.safe_load((REPO / file).read_text())
        spec["stages"] = {name: spec["stages"][name] for name in names}
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump(_params(), sort_keys=False))
    script = REPO / "benchmarks" / "avsbench_full.py"
    _run(root, sys.executable, str(script), "--out", RAW, "--fraction", "0.001", "--datasets", "s4")
    _run(root, "git", "init", "-q")
    _dvc(root, "init", "-q", "--force")
    return root


def _manifest_bytes(root: Path) -> dict[str, bytes]:
    files = [root / "data_manifests" / "tiny_s4.csv", *sorted((root / "data/tiny_s4/manifest").iterdir())]
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _shard_of(root: Path, video_id: str) -> int:
    for shard in (0, 1):
        with open(root / f"data/tiny_s4/manifest/shard-{shard}.csv", newline="") as fh:
            if any(row["video_id"] == video_id for row in csv.DictReader(fh)):
                return shard
    raise AssertionError(f"{video_id} is in no manifest slice")


def _repro(root: Path) -> list[str]:
    """``dvc repro -P``: this project has no train stage, whose deps make plain ``dvc repro`` reach the extract
    items of features/extract/dvc.yaml (docs/pipeline.md, "Pipeline files")."""
    return _stages_run(_dvc(root, "repro", "-P"))


@pytest.mark.slow
def test_dvc_reruns_what_the_tree_stamp_says(tmp_path):
    root = _make_project(tmp_path / "project")
    assert set(_repro(root)) == {
        CODE,
        "demo_data",
        STAMP,
        "manifest@tiny_s4",
        f"{X}@tiny_s4-0",
        f"{X}@tiny_s4-1",
    }
    assert _repro(root) == [STAMP]  # nothing changed: nothing downstream
    assert _status(root) == {STAMP: ["always changed"]}
    cache = root / "pipeline" / "__pycache__"  # byte code Python writes beside the sources (.dvcignore)
    cache.mkdir(exist_ok=True)
    (cache / "atomic.cpython-311.pyc").write_bytes(b"byte code")
    assert _repro(root) == [STAMP]

    label = sorted((root / TREE / "s4_data/gt_masks").rglob("*_1.png"))[0]
    video_id = f"{label.parent.parent.name}/{label.parent.name}"  # gt_masks/{split}/{category}/{name}/
    manifest = _manifest_bytes(root)
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: same bytes
    assert _repro(root) == [STAMP, "manifest@tiny_s4"]
    assert _manifest_bytes(root) == manifest

    mask = np.asarray(Image.open(label).convert("L"))
    Image.fromarray(np.where(mask > 0, 0, 255).astype(np.uint8)).save(label)  # the label inverted
    shard = _shard_of(root, video_id)
    ran = _repro(root)
    assert ran == [STAMP, "manifest@tiny_s4", f"{X}@tiny_s4-{shard}"], ran

    _add_video(root / TREE, label.parent.name, "zz_added")
    ran = _repro(root)
    assert ran[:2] == [STAMP, "manifest@tiny_s4"] and len(ran) == 3, ran  # + its one shard
    assert "zz_added" in (root / "data_manifests" / "tiny_s4.csv").read_text()

    with open(root / "pipeline" / "extraction.py", "a") as fh:  # code only `avs extract` runs
        fh.write("\n# an edit\n")
    ran = _repro(root)
    assert set(ran) == {CODE, STAMP, f"{X}@tiny_s4-0", f"{X}@tiny_s4-1"}, ran


@pytest.mark.slow
def test_a_noop_repro_leaves_the_root_lock_alone(tmp_path):
    """DVC rewrites the whole dvc.lock of each stage it runs (~1.6 s per stamp item for the root lock at AVSBench
    size): the always-changed stamp stages, in stamps/dvc.yaml, rewrite only stamps/dvc.lock."""
    root = _make_project(tmp_path / "project", stages={"dvc.yaml": ("demo_data", "manifest")})
    _dvc(root, "repro")
    lock, stamps_lock = root / "dvc.lock", root / STAMPS.replace("dvc.yaml", "dvc.lock")
    assert set(yaml.safe_load(stamps_lock.read_text())["stages"]) == {"code_digest", "trees"}
    assert not [name for name in yaml.safe_load(lock.read_text())["stages"] if name == "trees"]
    content, past = lock.read_bytes(), lock.stat().st_mtime_ns - 10_000_000_000
    for path in (lock, stamps_lock):
        os.utime(path, ns=(past, past))  # a rewrite shows however fast it comes
    assert _stages_run(_dvc(root, "repro")) == [STAMP]
    assert lock.read_bytes() == content and lock.stat().st_mtime_ns == past
    assert stamps_lock.stat().st_mtime_ns != past  # the stamp stage ran and wrote its own lock


def _add_video(tree: Path, name: str, new: str) -> None:
    """A copy of video ``name`` under the name ``new`` (frames, labels, wav and meta row), as a user adds one."""
    data = tree / "s4_data"
    for kind in ("visual_frames", "gt_masks"):
        (source,) = [p for p in (data / kind).rglob(name) if p.is_dir()]
        target = source.with_name(new)
        target.mkdir()
        for path in source.iterdir():
            shutil.copy(path, target / path.name.replace(name, new))
    (wav,) = (data / "audio_wav").rglob(f"{name}.wav")
    shutil.copy(wav, wav.with_name(f"{new}.wav"))
    with open(tree / "s4_meta_data.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["name"] == name) | {"name": new}
    with open(tree / "s4_meta_data.csv", "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(row)).writerow(row)
