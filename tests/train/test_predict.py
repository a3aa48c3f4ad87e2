"""`avs predict` on a raw video with a (briefly) trained checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import media
from stages.cli import main
from tests.train.test_loop import toy_params, write_toy_shards
from train.loop import train


@pytest.fixture(scope="module")
def transavs_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_shards")
    write_toy_shards(root, dim=1024)  # YAMNet width: predict computes real YAMNet embeddings
    result = train(toy_params(model="transavs_tiny", max_steps=2), str(root), [0], root / "run", progress=False)
    return result["final"]


def test_predict_any_length_video(tmp_path, make_video, transavs_checkpoint):
    video = make_video("long clip.mp4", seconds=7.4, size=(48, 64))
    out = tmp_path / "pred"
    assert main(["predict", str(video), "--checkpoint", str(transavs_checkpoint), "--out", str(out)]) == 0
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["seconds"] == 7  # one prediction per whole second, in windows of 5
    masks = sorted((out / "masks").glob("second_*.png"))
    assert len(masks) == 7
    overlay = media.decode_all_frames(out / "overlay.mp4")
    assert overlay.shape[0] == 7 and overlay.dtype == np.uint8


def test_predict_bad_input_is_one_line(tmp_path, transavs_checkpoint, capsys):
    bad = tmp_path / "not a video.mp4"
    bad.write_text("hello\n" * 30)
    assert main(["predict", str(bad), "--checkpoint", str(transavs_checkpoint), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a video.mp4" in err[0]
    assert main(["predict", str(bad), "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
