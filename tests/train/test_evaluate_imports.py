"""``avs evaluate`` of a model without a torchvision part must not import what it does not use: torchvision
(which imports torch._dynamo, sympy and triton: ~165 MB resident), scipy.optimize (the training matcher)
or matplotlib (the report's charts, imported when the report is rendered). Checked in a fresh interpreter,
since this test session has imported them all already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOT_NEEDED = ("torchvision", "torch._dynamo", "sympy", "triton", "scipy.optimize", "matplotlib")

PROGRAM = """
import json, sys
import stages.evaluate
from train.models import build_model
build_model("combo_mnv2", pretrained=None, num_points=64)
print(json.dumps(sorted(name for name in {names} if name in sys.modules)))
"""


def _imported_after(program: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", program.format(names=list(NOT_NEEDED))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_evaluate_and_a_mobilenet_model_import_no_torchvision_scipy_optimize_or_matplotlib() -> None:
    assert _imported_after(PROGRAM) == []


def test_a_resnet_model_still_gets_its_torchvision_blocks() -> None:
    program = PROGRAM.replace('build_model("combo_mnv2", pretrained=None, num_points=64)', "")
    program = program.replace(
        "import stages.evaluate",
        'from train.models.backbones import build_backbone\nbuild_backbone("resnet18_small", frozen_bn=True)',
    )
    assert "torchvision" in _imported_after(program)


def test_heap_release_finds_glibc_and_runs() -> None:
    import platform

    from train.evaluation import memory

    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert (memory._glibc() is not None) is on_glibc
    memory.release_free_heap()  # returns; a no-op where not glibc
