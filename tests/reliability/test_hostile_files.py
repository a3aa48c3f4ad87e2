"""Corrupt or foreign files given where the pipeline expects its own: one clear line, right exit code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.shards import ShardWriter, shard_file
from stages.cli import main


def _extract_shard(root: Path) -> None:
    with ShardWriter(shard_file(root, "demo", "extract", 0), kind="extract", params_hash="x") as writer:
        writer.write_video("a", {"frames": np.zeros((1, 32, 32, 3), np.uint8)})


def test_corrupt_proposals_checkpoint_stops_the_stage(tmp_path, capsys):
    _extract_shard(tmp_path / "data")
    bad = tmp_path / "mobile_sam.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 100)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(tmp_path / "data")},
                "dask": {"n_workers": 0},
                "proposals": {"checkpoint": str(bad), "cache_dir": ""},
            }
        )
    )
    code = main(["proposals", "--params", str(params), "--dataset", "demo", "--shard", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "mobile_sam.pt" in err[0] and "cannot read checkpoint" in err[0]
    assert not shard_file(tmp_path / "data", "demo", "proposals", 0).exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, b"PK\x03\x04" + b"\x00" * 64])
def test_corrupt_model_checkpoint_is_one_short_line(tmp_path, capsys, content):
    bad = tmp_path / "model.pt"
    bad.write_bytes(content)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    assert main(["predict", str(video), "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pt" in err[0] and len(err[0]) <= 240 and "weights_only" not in err[0]


def test_foreign_torch_file_is_not_a_model_checkpoint(tmp_path, capsys):
    foreign = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    assert main(["evaluate", "--checkpoint", str(foreign), "--no-progress"]) == 2
    assert "not a model checkpoint" in capsys.readouterr().err


def test_a_shard_in_which_every_video_failed_exits_1_with_the_reason(tmp_path, capsys):
    """Never "0 videos, exit 0": proposals on a shard whose videos all lack frames."""
    with ShardWriter(shard_file(tmp_path / "data", "demo", "extract", 0), kind="extract", params_hash="x") as writer:
        for vid in ("a", "b", "c"):
            writer.write_video(vid, {"audio": np.zeros(16000, np.int16)})  # no frames
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(tmp_path / "data")},
                "dask": {"n_workers": 0},
                "proposals": {"preset": "demo", "cache_dir": ""},
            }
        )
    )
    code = main(["proposals", "--params", str(params), "--dataset", "demo", "--shard", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "every video failed (3); most common reason (3x)" in err and "has no 'frames'" in err


class _WritesAFile:
    """A pickle payload that would create ``path`` if unpickling ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_numpy_holding_checkpoints_load_but_code_never_runs(tmp_path):
    import numpy as np
    import torch

    from pipeline.torch_files import TorchFileError, load_torch_file

    ok = tmp_path / "published.pth"
    torch.save({"model": {"w": torch.ones(2)}, "iteration": np.int64(7), "mean": np.arange(3.0)}, ok)
    loaded = load_torch_file(ok, allow_numpy=True)
    assert loaded["iteration"] == 7 and loaded["mean"].tolist() == [0.0, 1.0, 2.0]
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _WritesAFile(marker)}, evil)
    for allow_numpy in (False, True):
        with pytest.raises(TorchFileError, match="evil.pth"):
            load_torch_file(evil, allow_numpy=allow_numpy)
    assert not marker.exists()
