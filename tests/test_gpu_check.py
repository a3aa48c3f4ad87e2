"""The GPU check script's CPU dry run (benchmarks/gpu_check.py --device cpu): every part runs through the
project's own code and writes its JSON, so the script is ready the day a CUDA machine is lent."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--steps", "2",
           "--size", "32", "--batch", "2", "--videos", "4", "--warmup", "0", "--model", "combo_tiny", "--json", str(out),
           "--predict-seconds", "3", "--video-size", "48", "64"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    for part in ("train", "ddp"):
        assert report[part]["steps"] == 2 and report[part]["device"] == "cpu", report[part]
        assert report[part]["s_per_it"] > 0 and report[part]["loss_first10"] > 0
    assert report["ddp"]["processes"] == 1
    tiny = report["semantic_sam"]["tiny_golden"]
    assert tiny["fp32"]["masks"] >= 1 and tiny["fp32"]["s_per_frame"] > 0
    predict = report["predict"]
    assert "skipped" not in predict and "error" not in predict, predict  # every package it needs is here
    assert predict["checkpoint"].startswith("trained") and predict["device"] == "cpu"
    assert predict["video_seconds"] == 3 and predict["frames_predicted"] == 3, predict
    assert predict["mask_files"] == predict["overlay_frames"] == 3 and predict["masks_at_video_size"], predict
    assert predict["outputs_match_video"] and predict["proposal_backend"].startswith("mobile_sam"), predict
    assert math.isfinite(predict["seconds"]) and predict["seconds"] > 0 and math.isfinite(predict["s_per_frame"])
