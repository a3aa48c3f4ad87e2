"""The cost model's arithmetic (benchmarks/bench_cost_model.py) on hand-made measurements: the projection
formula, the speedup / efficiency summary, the GPU column and the JSON shape. No timing is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_cost_model as cost  # noqa: E402


def _mode(start: float, stop: float, warm: float, fixed: float, per_frame: float) -> dict[str, float]:
    return {"cluster_start_s": start, "cluster_stop_s": stop, "warm_up_s": warm, "stage_fixed_s": fixed,
            "wall_s": 0.0, "per_video_s": per_frame * 5, "per_frame_s": per_frame}  # fmt: skip


def _case(name: str, modes: tuple[int, ...], efficiency_from: str | None = None, serial: bool = False) -> cost.Case:
    """A case record as build_cases makes it; run / warm_up are never called by the summary."""
    return cost.Case(name, name, videos=4, frames_per_video=5, modes=modes, run=print, warm_up=print,
                     efficiency_from=efficiency_from, serial=serial)  # fmt: skip


MEASURED = {
    "extract": {"start_cost_s": 10.0, "per_frame_1_s": 0.5, "efficiency": 0.8, "serial": False},
    "proposals:combo": {"start_cost_s": 1.0, "per_frame_1_s": 0.01, "efficiency": None, "serial": True},
    "proposals:semantic_sam": {"start_cost_s": 20.0, "per_frame_1_s": 7.0, "efficiency": 1.0, "serial": False},
    "proposals:mobile_sam:reference": {"start_cost_s": 5.0, "per_frame_1_s": 2.0, "efficiency": None, "serial": False},
}
SIZES = {"s4": {"videos": 600, "frames": 3000}, "ms3": {"videos": 10, "frames": 50}}


def test_projection_follows_the_formula_per_dataset_and_workers():
    out = cost.project(MEASURED, SIZES, videos_per_shard=300, gpu_s_per_frame=2.0)
    s4 = out["s4"]
    assert s4["extract"]["items"] == 2 and s4["extract"]["frames"] == 3000 and s4["extract"]["videos"] == 600
    # items x start_cost + frames x per_frame(1) / (W x e)
    assert s4["extract"]["W2_s"] == pytest.approx(2 * 10 + 3000 * 0.5 / (2 * 0.8), abs=0.05)
    assert s4["extract"]["W32_s"] == pytest.approx(2 * 10 + 3000 * 0.5 / (32 * 0.8), abs=0.05)
    # a stage without dask does not get faster with more workers
    assert s4["proposals:combo"]["W2_s"] == s4["proposals:combo"]["W32_s"] == pytest.approx(2 * 1 + 30, abs=0.05)
    # no efficiency (not measured, nothing to borrow): no projection
    assert s4["proposals:mobile_sam:reference"]["W2_s"] is None
    # the GPU column is Semantic-SAM's only: frames x s/frame
    assert s4["proposals:semantic_sam"]["gpu_1_s"] == pytest.approx(3000 * 2.0, abs=0.05)
    assert s4["extract"]["gpu_1_s"] is None
    assert out["ms3"]["extract"]["items"] == 1  # at least one item
    assert out["ms3"]["extract"]["W2_s"] == pytest.approx(10 + 50 * 0.5 / 1.6, abs=0.05)


def test_projection_without_a_gpu_measurement_leaves_the_column_empty():
    out = cost.project(MEASURED, SIZES, videos_per_shard=300)
    assert all(row["gpu_1_s"] is None for by_case in out.values() for row in by_case.values())
    text = json.dumps(out)  # the JSON shape: plain numbers and nulls
    assert set(json.loads(text)["s4"]["extract"]) == {"items", "videos", "frames", "W2_s", "W32_s", "gpu_1_s"}


def test_summary_measures_speedup_efficiency_and_start_cost():
    modes = {"0": _mode(0, 0, 1, 0.1, 0.30), "1": _mode(4, 3, 2, 0.2, 0.40), "2": _mode(5, 4, 3, 0.5, 0.25)}
    record = cost.summarise(_case("extract", (0, 1, 2)), modes, {})
    assert record["speedup_2"] == pytest.approx(0.40 / 0.25, abs=1e-3)
    assert record["efficiency"] == pytest.approx(0.40 / 0.25 / 2, abs=1e-3)
    assert record["efficiency_source"] == "measured 1 -> 2 workers"
    assert record["start_cost_s"] == pytest.approx(5 + 4 + 3 + 0.5, abs=1e-3)  # the 2-worker item's fixed costs
    assert record["per_frame_1_s"] == pytest.approx(0.40)
    json.dumps(record)


def test_summary_borrows_efficiency_and_marks_serial_stages():
    fast = {"efficiency": 0.9}
    ref = cost.summarise(_case("ref", (1,), efficiency_from="fast"), {"1": _mode(4, 3, 2, 0.2, 60.0)}, {"fast": fast})
    assert ref["efficiency"] == pytest.approx(0.9) and ref["efficiency_source"] == "borrowed from fast"
    assert ref["speedup_2"] is None and ref["start_cost_s"] == pytest.approx(9.2, abs=1e-3)
    alone = cost.summarise(_case("ref", (1,), efficiency_from="fast"), {"1": _mode(4, 3, 2, 0.2, 60.0)}, {})
    assert alone["efficiency"] is None and alone["efficiency_source"] == "not measured"
    combo = cost.summarise(_case("combo", (0,), serial=True), {"0": _mode(0, 0, 0.01, 0.02, 0.008)}, {})
    assert combo["serial"] and combo["efficiency"] is None and combo["per_frame_1_s"] == pytest.approx(0.008)


def test_gpu_column_reads_gpu_check_json(tmp_path):
    path = tmp_path / "gpu_check.json"
    assert cost.gpu_seconds_per_frame(path) is None  # not run
    path.write_text(json.dumps({"semantic_sam": {"tiny_golden": {"fp32": {"s_per_frame": 0.1}}}}))
    assert cost.gpu_seconds_per_frame(path) is None  # a CPU dry run has no SwinL entry
    report = {"semantic_sam": {"swinl_random": {"frame": [360, 640], "fp32": {"s_per_frame": 0.42, "masks": 3}}}}
    path.write_text(json.dumps(report))
    assert cost.gpu_seconds_per_frame(path) == pytest.approx(0.42)


def test_dataset_sizes_are_the_release_counts_of_avsbench_full():
    sizes = cost.dataset_sizes()
    assert sizes["s4"] == {"videos": 4932, "frames": 24660}
    assert sizes["ms3"] == {"videos": 424, "frames": 2120}
    assert sizes["avss"] == {"videos": 11356, "frames": (4932 + 424) * 5 + 6000 * 10}
