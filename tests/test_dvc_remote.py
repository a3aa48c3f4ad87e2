"""A team shares the pipeline's outputs through a DVC remote (docs/pipeline.md, "Sharing features in a team").

One person runs ``dvc repro`` and ``dvc push``; a teammate clones the git repository, runs ``dvc pull``
and finds every stage up to date: nothing reruns, although the teammate has no raw videos. For that,
every output of dvc.yaml is either cached (``dvc pull`` brings it) or committed to git (the clone has
it); the raw data (the demo trees, a team's AVSBench copy) is neither, and ``dvc repro --allow-missing``
skips the stages whose only change is that missing raw data. The tree-stamp stage (``stamps/dvc.yaml:trees``) is
``always_changed``, so ``dvc repro --allow-missing`` runs it: without the raw trees it keeps the pulled stamps byte
for byte, so no other stage runs.

The slow test builds a small real project: this repository's code and pipeline files, params pointing at a
few AVSBench-layout videos written by ``benchmarks/avsbench_full.py`` with COMBO maskige trees (so no
SAM model runs), a tiny model trained for 2 steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_dvc_deps import FEATURE_DEP, PIPELINE_FILES, feature_deps, pipeline_stages

REPO = Path(__file__).resolve().parents[1]
CODE = ("pipeline", "stages", "train")
GIT_CONFIG = (".gitignore", ".dvcignore", ".dvc/config", "metrics/eval/.gitignore")
RAW = "data/raw/tiny"  # the generated release trees: the project's raw data
STAMP_STAGES = ("stamps/dvc.yaml:trees",)  # always changed: run by every repro
RAW_STAGES = ("demo_data", *STAMP_STAGES)  # the stages that read raw data
COMBO_STAGE = "features/proposals/dvc.yaml:combo_maskiges"  # as DVC names a stage of another pipeline file
DATASETS = ["tiny_s4", "tiny_ms3"]
TEAM = {"GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@example.org"}
TEAM |= {"GIT_COMMITTER_NAME": "lab", "GIT_COMMITTER_EMAIL": "lab@example.org", "DVC_NO_ANALYTICS": "1"}


def _stage_outputs(stage: dict) -> list[tuple[str, dict]]:
    """(path, flags) of every output, metric and plot of one dvc.yaml stage body."""
    found = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            path, flags = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            found.append((path, flags or {}))
    return found


def _git_ignored(paths: list[str]) -> set[str]:
    """Those of ``paths`` that git ignores in this repository (the repo's own .gitignore files)."""
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=REPO,
        input="\n".join(paths),
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.split())


def test_every_output_is_cached_or_in_git():
    """The rule that makes a pulled clone up to date: an uncached output must be one git tracks, else a clone
    lacks it and its stage reruns. The exception is demo_data's stamps: they describe the raw demo trees,
    which a teammate does not have either (``dvc repro --allow-missing`` skips that stage)."""
    uncached = {
        path: name
        for name, body in pipeline_stages().items()
        for path, flags in _stage_outputs(body)
        if flags.get("cache", True) is False
    }
    ignored = _git_ignored(sorted(uncached))
    raw_stamps = {p for p in ignored if uncached[p] == "demo_data" and p.startswith("data/raw/")}
    wrong = sorted(f"{uncached[p]}: {p}" for p in ignored - raw_stamps)
    assert not wrong, f"dvc.yaml outputs neither cached nor tracked by git (a pulled clone reruns them): {wrong}"


def test_cached_outputs_are_not_committed_to_git():
    """A cached output DVC checks out must be git-ignored (dvc adds it to .gitignore; a stale entry in git would
    show as a change after every ``dvc pull``)."""
    cached = [
        path
        for body in pipeline_stages().values()
        for path, flags in _stage_outputs(body)
        if flags.get("cache", True) and "${" not in path
    ]
    tracked = subprocess.run(["git", "ls-files", *cached], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert not tracked, f"cached dvc.yaml outputs also committed to git: {tracked}"


# ---------------------------------------------------------------- the shared project, end to end
def _run(cwd: Path, *command: str) -> str:
    env = {**os.environ, **TEAM, "PYTHONPATH": str(cwd), "PATH": f"{Path(sys.executable).parent}{os.pathsep}"}
    env["PATH"] += os.environ.get("PATH", "")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _dvc(cwd: Path, *args: str) -> str:
    return _run(cwd, sys.executable, "-m", "dvc", *args)


def _tiny_params() -> dict:
    """The repository's params.yaml, pointed at the tiny release trees (two datasets, one shard each)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    datasets = DATASETS
    params["demo"] |= {"s4_videos": [0, 0, 0], "ms3_videos": [0, 0, 0], "avss_videos": [0, 0, 0]}
    params["data"] |= {"datasets": datasets, "shards": [0]}
    params["dask"] |= {"n_workers": 0}
    params["manifest"]["datasets"] = {
        "tiny_s4": {"source": "avsbench_s4", "root": f"{RAW}/Single-source"},
        "tiny_ms3": {"source": "avsbench_ms3", "root": f"{RAW}/Multi-sources"},
    }
    params["extract"] |= {"frame_size": [64, 64]}
    params["proposals"] |= {
        "datasets": [],
        "maskige_trees": {
            "tiny_s4": f"{RAW}/Single-source/s4_data/pre_SAM_mask",
            "tiny_ms3": f"{RAW}/Multi-sources/ms3_data/pre_SAM_mask",
        },
    }
    params["train"] |= {"model": "combo_tiny", "task": "binary", "datasets": datasets, "max_steps": 2, "batch_size": 2}
    params["train"] |= {"size": [32, 32], "inference_size": [32, 32], "num_workers": 0, "checkpoint_every": 2}
    params["evaluate"] |= {"datasets": datasets, "overlays": 2}
    return params


def _dvc_yaml_for(datasets: list[str]) -> dict:
    """This repository's dvc.yaml with train's and evaluate's feature deps edited for ``datasets``: the edit
    docs/pipeline.md asks of a user who trains on other datasets (DVC cannot derive them from params)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name in ("train", "evaluate"):
        deps = [dep for dep in spec["stages"][name]["deps"] if not FEATURE_DEP.fullmatch(str(dep))]
        spec["stages"][name]["deps"] = feature_deps(datasets) + deps
    return spec


def copy_code(root: Path) -> None:
    """A new folder ``root`` holding this repository's code and its git / DVC config files."""
    root.mkdir()
    for folder in CODE:
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in GIT_CONFIG:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)


def _make_project(root: Path) -> Path:
    """A git + DVC project: this repo's code, git config files and pipeline files, tiny params and raw data."""
    copy_code(root)
    (root / "params.yaml").write_text(yaml.safe_dump(_tiny_params(), sort_keys=False))
    for name in PIPELINE_FILES[1:]:  # stamps/dvc.yaml as it is
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "dvc.yaml").write_text(yaml.safe_dump(_dvc_yaml_for(DATASETS), sort_keys=False))
    script = REPO / "benchmarks" / "avsbench_full.py"
    _run(root, sys.executable, str(script), "--out", RAW, "--fraction", "0.002", "--datasets", "s4", "ms3")
    _run(root, "git", "init", "-q")
    _dvc(root, "init", "-q", "--force")  # --force: .dvc/config was copied in
    _run(root, "git", "add", "-A")
    _run(root, "git", "commit", "-q", "-m", "code and params")  # dvclive (train, evaluate) needs a commit
    return root


def _stages_run(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")]


def _status(cwd: Path, *targets: str) -> dict:
    return json.loads(_dvc(cwd, "status", "--json", *targets).strip().splitlines()[-1])


@pytest.mark.slow
def test_a_pulled_clone_reruns_nothing(tmp_path):
    lab = _make_project(tmp_path / "lab")
    _dvc(lab, "remote", "add", "-d", "team", str(tmp_path / "remote"))
    ran = _stages_run(_dvc(lab, "repro"))
    assert {"train", "evaluate", f"{COMBO_STAGE}@tiny_s4", "features/audio/dvc.yaml:audio@tiny_ms3-0"} <= set(ran), ran
    _run(lab, "git", "add", "-A")
    _run(lab, "git", "commit", "-q", "-m", "features, model and report")
    _dvc(lab, "push")

    mate = tmp_path / "mate"  # a teammate who only trains: the git repository and the remote, no raw data
    _run(tmp_path, "git", "clone", "-q", str(lab), str(mate))
    _dvc(mate, "pull")
    for output in ("metrics/eval/report.html", "metrics/eval/overlays", "data/runs/train/model.pt"):
        assert (mate / output).exists(), f"dvc pull did not bring {output}"
    assert not (mate / RAW).exists()

    stamps = _stamps(mate)
    assert stamps == _stamps(lab) and len(stamps) == 4  # a source and a maskige tree per dataset
    assert set(_stages_run(_dvc(mate, "repro", "--allow-missing"))) == set(STAMP_STAGES)  # the stamp stage alone
    assert _stamps(mate) == stamps  # kept byte for byte: the trees are absent
    assert _status(mate, "train", "evaluate") == {}
    changed = _status(mate)  # only the raw data is missing, and only the stages that read it see it
    assert {name.split("@")[0] for name in changed} <= set(RAW_STAGES), changed
    assert all(set(_changed_kinds(entry)) <= {"deleted", "always changed"} for entry in changed.values()), changed

    shutil.copytree(lab / "data" / "raw", mate / "data" / "raw", dirs_exist_ok=True)  # a teammate with the raw data
    assert _status(mate) == {name: ["always changed"] for name in STAMP_STAGES}
    # The copies have new inodes and ctimes: the stamps change, the manifests and COMBO maskiges rerun
    # (docs/pipeline.md, "Source-tree stamps") and write the same outputs, so training does not rerun.
    ran = _stages_run(_dvc(mate, "repro"))
    assert {name.split("@")[0] for name in ran} <= {*STAMP_STAGES, "manifest", COMBO_STAGE}, ran

    shutil.rmtree(mate / "data" / "raw")  # back to a pulled clone: no raw data but demo_data's cached summary
    _dvc(mate, "checkout", "data/raw/demo/demo_summary.json")
    # a training experiment reruns train and evaluate only (and the stamp stages), on the pulled features
    ran = _stages_run(_dvc(mate, "exp", "run", "--allow-missing", "-S", "train.lr=0.002"))
    assert [name for name in ran if name.split("@")[0] not in STAMP_STAGES] == ["train", "evaluate"], ran


def _stamps(project: Path) -> dict[str, bytes]:
    """Stamp file (data/stamps/D/source_tree.json, data/stamps/D/maskige_tree.json) -> its bytes."""
    folder = project / "data" / "stamps"
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*.json"))}


def _changed_kinds(entry: list) -> list[str]:
    """The change words ("deleted", "modified", ...) of one ``dvc status --json`` stage entry."""
    kinds = []
    for item in entry:
        if isinstance(item, dict):
            for changes in item.values():
                kinds += list(changes.values()) if isinstance(changes, dict) else [changes]
        else:
            kinds.append(item)
    return kinds
