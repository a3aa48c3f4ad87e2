"""benchmarks/bench_scale.py's plumbing on real inputs: the workspace DAG it derives from the project's
pipeline files, and how it reads DVC's own output (what ran, what is pending, the demo baseline) in a tiny
DVC project with an always-changed stamp stage in its own file, like the tree stamps (stamps/dvc.yaml)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
bench_scale = importlib.import_module("bench_scale")

TINY_DAG = {
    "stages": {
        "stamp": {
            "foreach": ["a", "b"],
            "do": {
                "cmd": "ls raw > stamp-${item}.txt",
                "deps": ["raw", "data/raw/demo/Single-source/.demo_files.json"],
                "always_changed": True,
                "outs": [{"stamp-${item}.txt": {"cache": False}}],
            },
        },
        "features": {  # plain `dvc repro` runs a stamp item of stamps/dvc.yaml only if a dvc.yaml stage reads it
            "cmd": "cat stamp-a.txt stamp-b.txt > features.txt",
            "deps": ["stamp-a.txt", "stamp-b.txt"],
            "outs": ["features.txt"],
        },
    }
}


@pytest.mark.parametrize("file", bench_scale.PIPELINE_FILES)
def test_workspace_dag_drops_demo_data_and_every_demo_tree_dep(file):
    dag = bench_scale.workspace_dag(yaml.safe_load((REPO / file).read_text()))
    assert "demo_data" not in dag["stages"]
    for name, stage in dag["stages"].items():
        deps = [str(d) for d in stage.get("do", stage).get("deps", [])]
        assert not [d for d in deps if d.startswith("data/raw/demo/") or "data/demo_" in d], name


def test_workspace_dag_keeps_train_on_the_generated_features():
    dag = bench_scale.workspace_dag(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    assert "data/s4/extract" in dag["stages"]["train"]["deps"]
    assert "data/ms3/audio" in dag["stages"]["evaluate"]["deps"]


STAMP_ITEMS = ["stamps/dvc.yaml:stamp@a", "stamps/dvc.yaml:stamp@b"]  # as DVC names them


def test_workspace_dag_reaches_foreach_stages():
    dag = bench_scale.workspace_dag(json.loads(json.dumps(TINY_DAG)))
    assert dag["stages"]["stamp"]["do"]["deps"] == ["raw"]
    assert dag["stages"]["features"]["deps"] == ["stamp-a.txt", "stamp-b.txt"]


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A DVC project (no git) whose stamp items (in stamps/dvc.yaml, run from the root as the project's
    are) always run and change nothing downstream."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "one.txt").write_text("1")
    dag = json.loads(json.dumps(TINY_DAG))
    stamp = dag["stages"].pop("stamp")
    stamp["do"] |= {"deps": ["raw"], "wdir": ".."}
    (tmp_path / "stamps").mkdir()
    (tmp_path / "stamps" / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"stamp": stamp}}))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dag))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=tmp_path, check=True)
    return tmp_path


def test_stamps_are_told_apart_from_real_reruns(tiny_project):
    always = bench_scale.always_changed_stages(tiny_project)
    assert always == ["stamps/dvc.yaml:stamp"]
    first = bench_scale.ran(bench_scale.timed(["dvc", "repro"], tiny_project)["stdout"], always)
    assert first == {"reran": ["features"], "always_changed_ran": STAMP_ITEMS}
    again = bench_scale.ran(bench_scale.timed(["dvc", "repro"], tiny_project)["stdout"], always)
    assert again == {"reran": [], "always_changed_ran": STAMP_ITEMS}
    status = json.loads(bench_scale.dvc(tiny_project, "status", "--json"))
    assert set(status) == set(STAMP_ITEMS) and bench_scale.pending(status) == {}


def test_demo_baseline_only_on_an_up_to_date_project(tiny_project, capsys):
    assert bench_scale.demo_baseline(tiny_project, repeats=1) is None  # features never ran
    assert "features" in capsys.readouterr().out
    subprocess.run(["dvc", "repro", "-q"], cwd=tiny_project, check=True)
    demo = bench_scale.demo_baseline(tiny_project, repeats=1)
    assert demo["dvc_status_s"] > 0 and demo["dvc_repro_noop_s"] > 0 and demo["repeats"] == 1
    assert demo["reran"] == [] and demo["always_changed_ran"] == STAMP_ITEMS
    assert not list(tiny_project.glob("*time*"))  # GNU time's record never lands in the measured project


def test_noop_times_the_demo_beside_each_of_its_runs(tiny_project):
    """The ratio to the demo is of runs minutes apart unless the demo's runs sit between the point's."""
    subprocess.run(["dvc", "repro", "-q"], cwd=tiny_project, check=True)
    always = bench_scale.always_changed_stages(tiny_project)
    point = bench_scale.noop(tiny_project, always, repeats=2, beside=tiny_project)
    assert len(point["dvc_repro_noop_runs_s"]) == 2 and len(point["demo"]["runs_s"]) == 2
    assert point["demo"]["dvc_repro_noop_s"] > 0 and point["demo"]["dvc_status_s"] > 0
    assert point["commands_s"] == {} and point["dvc_s"] > 0  # the tiny project runs no avs command
    assert "demo" not in bench_scale.noop(tiny_project, always, repeats=1)


def test_bench_copies_every_pipeline_file():
    """The workspace holds the project's pipeline files: the list tests/test_dvc_deps.py keeps equal to git's."""
    from test_dvc_deps import PIPELINE_FILES

    assert bench_scale.PIPELINE_FILES == PIPELINE_FILES


def test_avs_timed_logs_each_avs_command_and_command_walls_reads_it(tmp_path):
    """The shim runs the ``avs`` found on PATH under GNU time; each run appends ``wall command``; two runs of the
    same command add up, another command is its own entry, and GNU time's exit-status lines are skipped."""
    from _command_times import avs_timed, command_walls

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "avs").write_text('#!/bin/sh\necho "ran $*"\n[ "$1" = fail ] && exit 3\nexit 0\n')
    (bin_dir / "avs").chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]])}
    with avs_timed(env) as (timed_env, log):
        for args in (["manifest", "--dataset", "s4"], ["manifest", "--dataset", "s4"], ["extract"], ["fail"]):
            done = subprocess.run(["avs", *args], env=timed_env, capture_output=True, text=True)
            assert done.stdout == f"ran {' '.join(args)}\n"
        assert done.returncode == 3  # the command's own exit status comes through
        walls = command_walls(log.read_text())
    assert set(walls) == {"manifest --dataset s4", "extract", "fail"}, walls
    assert all(0.0 <= seconds < 5.0 for seconds in walls.values())
    assert command_walls(
        "Command exited with non-zero status 3\n0.50 /x/avs audio --shard 1\n0.2 /x/python -c 1\n"
    ) == {"audio --shard 1": 0.5}
