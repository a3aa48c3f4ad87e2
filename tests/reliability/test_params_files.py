"""The params file as a whole, command-line numbers, and params checked against the data (issue 23 item 5).

Each case reproduces a probe that used to be accepted (``trian:``, an empty file, a key given twice,
``--seconds -5`` meaning the whole video, ``predict --size 0 0`` failing after 80 s of work, a semantic
model trained on binary masks) and asserts one line naming the key, before anything is written."""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.audio.features import AudioParams
from pipeline.extraction import ExtractParams
from pipeline.params import DaskParams, DataParams, ParamsError, from_section, load_params
from pipeline.proposals.config import Backend, ProposalParams, known_model_types
from pipeline.shards import ShardWriter, shard_file
from stages.cli import main
from stages.demo_data import DemoStageParams
from train.evaluate import EvalParams
from train.loop import TrainParams

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "params.yaml").read_text())
SECTIONS = [
    (TrainParams, "train"),
    (EvalParams, "evaluate"),
    (ExtractParams, "extract"),
    (AudioParams, "audio"),
    (ProposalParams, "proposals"),
    (DaskParams, "dask"),
    (DataParams, "data"),
    (DemoStageParams, "demo"),
]


def _params(tmp_path: Path, text: str | None = None, **sections) -> Path:
    path = tmp_path / "params.yaml"
    if text is None:
        params = copy.deepcopy(BASE)
        params["data"]["root"] = str(tmp_path / "data")
        for name, values in sections.items():
            params[name].update(values)
        text = yaml.safe_dump(params)
    path.write_text(text)
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) <= 240, err
    return err[0]


def test_unknown_top_level_section_is_refused(tmp_path, capsys):
    text = (REPO / "params.yaml").read_text() + "\ntrian:\n  max_steps: 5\n"
    assert main(["train", "--params", str(_params(tmp_path, text)), "--no-progress"]) == 2
    assert "unknown section(s) ['trian']; known: ['data'" in _one_line(capsys)


def test_empty_params_file_is_refused(tmp_path, capsys):
    assert main(["train", "--params", str(_params(tmp_path, "# nothing\n")), "--no-progress"]) == 2
    assert "params.yaml: the params file is empty" in _one_line(capsys)


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path):
    path = _params(tmp_path, "train:\n  lr: 0.1\n  max_steps: 5\n  lr: 0.2\n")
    with pytest.raises(ParamsError, match=r"duplicate key 'lr' \(line 4; first on line 2\)"):
        load_params(path)
    with pytest.raises(ParamsError, match=r"duplicate key 'train'"):
        load_params(_params(tmp_path, "train: {}\ntrain: {lr: 1}\n"))


@pytest.mark.parametrize("cls,name", SECTIONS, ids=[s[1] for s in SECTIONS])
def test_every_float_field_of_every_section_must_be_finite(cls, name):
    """The rule is pydantic's (allow_inf_nan=False on every params dataclass), not written field by field."""
    floats = [f.name for f in dataclasses.fields(cls) if "float" in str(typing.get_type_hints(cls)[f.name])]
    for field in floats:
        hint = str(typing.get_type_hints(cls)[field])
        for bad in (math.inf, math.nan):
            value = [bad, bad] if hint.startswith("list") else bad
            with pytest.raises(ParamsError, match=rf"{name}\.{field}(\.0)?: input should be a finite number"):
                from_section(cls, {field: value}, name)


def test_train_and_proposals_have_float_fields_so_the_rule_is_exercised():
    hints = typing.get_type_hints(TrainParams)
    assert sum("float" in str(hints[f.name]) for f in dataclasses.fields(TrainParams)) >= 5


def test_backend_values_are_the_registry_and_model_types_come_from_the_builders():
    from pipeline.proposals import list_backends
    from pipeline.proposals.sam_models import SAM_VIT_CONFIGS

    assert sorted(typing.get_args(Backend)) == list_backends()
    assert known_model_types("sam") == sorted(SAM_VIT_CONFIGS) and known_model_types("mobile_sam") == ["vit_t"]
    with pytest.raises(ParamsError, match=r"proposals.model_type must be one of \['vit_b', 'vit_h', 'vit_l'\] for sam"):
        from_section(ProposalParams, {"backend": "sam"}, "proposals")  # vit_t is MobileSAM's


@pytest.mark.parametrize("seconds", ["-5", "0", "1000000"])
def test_manifest_seconds_is_validated_like_its_param(tmp_path, capsys, seconds):
    (tmp_path / "videos").mkdir()
    params = _params(tmp_path)
    args = [
        "--source",
        "folder",
        "--root",
        str(tmp_path / "videos"),
        "--seconds",
        seconds,
        "--out",
        str(tmp_path / "m.csv"),
    ]
    assert main(["manifest", "--params", str(params), "--dataset", "demo_s4", *args, "--no-progress"]) == 2
    assert "manifest.datasets.demo_s4.seconds must be" in _one_line(capsys)
    assert not (tmp_path / "m.csv").exists()


def test_shard_argument_is_bounded_by_data_shards(tmp_path, capsys):
    params = _params(tmp_path)
    assert main(["extract", "--params", str(params), "--dataset", "demo_s4", "--shard", "7", "--no-progress"]) == 2
    assert "--shard must be in 0..1 (data.shards), got 7" in _one_line(capsys)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--size", "0", "0"], "--size.0 must be >= 8, got 0"),
        (["--size", "224", "100000"], "--size.1 must be <= 4096"),
        (["--window", "0"], "--window must be in 1..60 seconds, got 0"),
        (["--threshold", "nan"], "--threshold must be in (0, 1)"),
    ],
)
def test_predict_numbers_fail_before_any_work(tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    command = ["predict", str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "m.pt"), "--out", str(out), *args]
    assert main(command) == 2
    assert expected in _one_line(capsys)
    assert not out.exists()


def _extract_shard(data_root: Path, dataset: str, label_format: str) -> None:
    with ShardWriter(shard_file(data_root, dataset, "extract", 0), kind="extract", params_hash="x") as writer:
        writer.write_video(
            "v", {"frames": np.zeros((1, 8, 8, 3), np.uint8)}, {"split": "train", "label_format": label_format}
        )


@pytest.mark.parametrize("task,labels,fits", [("semantic", "binary_png", "binary"), ("binary", "voc_rgb", "semantic")])
def test_train_task_is_checked_against_the_data(tmp_path, capsys, task, labels, fits):
    params = _params(tmp_path, train={"task": task, "datasets": ["demo_s4"]})
    _extract_shard(tmp_path / "data", "demo_s4", labels)
    assert main(["train", "--params", str(params), "--no-progress"]) == 2
    line = _one_line(capsys)
    assert f"train.task: '{task}' needs" in line and f"dataset demo_s4 has ['{labels}'] (task: {fits})" in line, line
    assert not (tmp_path / "data" / "runs").exists()
