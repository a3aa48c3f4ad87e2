"""Every params section is validated at load: a bad value stops the stage with exit 2 and one line
of at most ~200 characters naming the key and the allowed range (probe family: bad params)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stages.cli import main

REPO = Path(__file__).resolve().parents[2]
INF, NAN = float("inf"), float("nan")
BASE = yaml.safe_load((REPO / "params.yaml").read_text())

# (section path, bad value, stage to run, text the error must contain)
CASES = [
    ("train.max_steps", -5, "train", "train.max_steps must be >= 1, got -5"),
    ("train.lr", -1, "train", "train.lr must be > 0"),
    ("train.batch_size", 0, "train", "train.batch_size must be >= 1"),
    ("train.weight_decay", -0.1, "train", "train.weight_decay must be >= 0"),
    ("train.grad_clip", -1, "train", "train.grad_clip must be >= 0"),
    ("train.colour_jitter", 1.5, "train", "train.colour_jitter must be < 1"),
    ("train.num_workers", -1, "train", "train.num_workers must be >= 0"),
    ("train.checkpoint_every", 0, "train", "train.checkpoint_every must be >= 1"),
    ("train.keep_checkpoints", -1, "train", "train.keep_checkpoints must be >= 0"),
    ("train.size", [112], "train", "train.size"),
    ("train.size", [4, 4], "train", "train.size.0 must be >= 8"),
    ("train.task", "panoptic", "train", "train.task"),
    ("train.amp", "fp8", "train", "train.amp"),
    ("train.scale_range", [2.0, 0.5], "train", "scale_range"),
    ("train.max_stepz", 5, "train", "unknown key 'max_stepz'"),
    ("evaluate.videos_per_batch", 0, "evaluate", "evaluate.videos_per_batch must be >= 1"),
    ("evaluate.overlays", -2, "evaluate", "evaluate.overlays must be >= 0"),
    ("evaluate.size", [0, 224], "evaluate", "evaluate.size.0 must be >= 8"),
    ("extract.resize_filter", "bilinearr", "extract", "extract.resize_filter"),
    ("extract.frame_size", [224, 2], "extract", "extract.frame_size.1 must be >= 8"),
    ("extract.missing_audio", "ignore", "extract", "extract.missing_audio"),
    ("audio.batch_seconds", 0, "audio", "audio.batch_seconds must be >= 1"),
    ("audio.encoder", "wav2vec", "audio", "wav2vec"),
    ("proposals.encoder_size", 1000, "proposals", "proposals.encoder_size"),
    ("proposals.threads_per_worker", 0, "proposals", "proposals.threads_per_worker must be >= 1"),
    ("proposals.preset", "turbo", "proposals", "proposals.preset"),
    ("dask.threads_per_worker", 0, "extract", "dask.threads_per_worker must be >= 1"),
    ("dask.n_workers", -1, "extract", "dask.n_workers must be >= 0"),
    ("data.shards", [0, 2], "extract", "data.shards"),
    ("data.datasets", ["../../x"], "extract", "data.datasets.0"),
    ("demo.flavours", ["s4", "zz"], "demo-data", "demo.flavours.1"),
    ("demo.s4_videos", [-1, 0, 0], "demo-data", "s4_videos"),
    ("demo.colour", 3, "demo-data", "unknown key 'colour'"),
    ("manifest.datasets", [1, 2], "manifest", "manifest.datasets"),
    ("manifest.datasets.demo_s4.source", "youtube", "manifest", "youtube"),
    ("manifest.datasets.demo_s4.seconds", "five", "manifest", "manifest.datasets.demo_s4.seconds"),
    # issue 23 item 5: values that validated but could not run
    ("extract.frame_size", [8, 1000000], "extract", "extract.frame_size.1 must be <= 4096, got 1000000"),
    ("extract.frame_size", [100000, 100000], "extract", "extract.frame_size.0 must be <= 4096"),
    ("train.poly_power", INF, "train", "train.poly_power: input should be a finite number, got inf"),
    ("train.poly_power", 100, "train", "train.poly_power must be <= 10"),
    ("train.lr", INF, "train", "train.lr: input should be a finite number"),
    ("train.weight_decay", INF, "train", "train.weight_decay: input should be a finite number"),
    ("train.scale_range", [INF, INF], "train", "train.scale_range.0: input should be a finite number"),
    ("train.scale_range", [0.5, 1000], "train", "train.scale_range.1 must be <= 8"),
    ("train.size", [100000, 100000], "train", "train.size.0 must be <= 4096"),
    ("train.split", "bogus", "train", "train.split: input should be 'train', 'val' or 'test'"),
    ("train.datasets", ["../../x"], "train", "train.datasets.0"),
    ("evaluate.size", [100000, 100000], "evaluate", "evaluate.size.0 must be <= 4096"),
    ("evaluate.split", "bogus", "evaluate", "evaluate.split: input should be 'train', 'val' or 'test', got 'bogus'"),
    ("evaluate.datasets", ["../../x"], "evaluate", "evaluate.datasets.0"),
    ("proposals.model_type", "vit_zz", "proposals", "proposals.model_type must be one of ['vit_t'] for mobile_sam"),
    (
        "proposals.generator",
        {"points_per_side": 100000},
        "proposals",
        "proposals.generator.points_per_side must be <= 128",
    ),
    (
        "proposals.generator",
        {"pred_iou_thresh": NAN},
        "proposals",
        "proposals.generator.pred_iou_thresh: input should be a finite",
    ),
    ("proposals.backend", "sam3", "proposals", "'mobile_sam', 'sam' or 'semantic_sam', got 'sam3'"),
    ("demo.s4_videos", [1000000000, 0, 0], "demo-data", "demo.s4_videos must total <= 10000 videos"),
]

STAGE_ARGS = {
    "train": ["--no-progress"],
    "evaluate": ["--no-progress"],
    "extract": ["--dataset", "demo_s4", "--shard", "0", "--no-progress"],
    "audio": ["--dataset", "demo_s4", "--shard", "0", "--no-progress"],
    "proposals": ["--dataset", "demo_s4", "--shard", "0", "--no-progress"],
    "demo-data": ["--no-progress"],
    "manifest": ["--dataset", "demo_s4", "--no-progress"],
}


def _params_with(tmp_path: Path, dotted: str, value) -> Path:
    params = copy.deepcopy(BASE)
    params["data"]["root"] = str(tmp_path / "data")
    *parents, key = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("dotted,value,stage,expected", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_bad_param_is_one_clear_line(tmp_path, capsys, dotted, value, stage, expected):
    params = _params_with(tmp_path, dotted, value)
    assert main([stage, "--params", str(params), *STAGE_ARGS[stage]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) <= 240, err
    assert expected in err[0], err[0]
    assert not (tmp_path / "data").exists()  # nothing written before validation passes


@pytest.mark.parametrize("dataset", ["../../x", "a/b", ".hidden", "x y"])
def test_dataset_argument_cannot_escape_the_data_folder(tmp_path, capsys, dataset):
    params = _params_with(tmp_path, "data.root", str(tmp_path / "data"))
    assert main(["extract", "--params", str(params), "--dataset", dataset, "--shard", "0", "--no-progress"]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_command_line_overrides_are_validated_like_the_file(tmp_path, capsys):
    params = _params_with(tmp_path, "data.root", str(tmp_path / "data"))
    assert main(["train", "--params", str(params), "--max-steps", "-3", "--no-progress"]) == 2
    assert "train.max_steps must be >= 1, got -3" in capsys.readouterr().err
