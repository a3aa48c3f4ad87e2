"""Every pipeline stage depends on the code its command runs, through that command's code digest.

A code change that alters a stage's output must rerun it, or DVC serves stale results. Each stage lists
``data/code/<command>.json`` (stamps/dvc.yaml's ``code_digest`` stage, :mod:`pipeline.code_digest`) instead
of its source files: these tests check that every stage does, that no stage lists sources by hand, that the
digest follows the import graph (imports inside functions, registries' module-name strings, package data) and
that it changes for exactly the commands whose sources changed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.code_digest import PACKAGES, code_digest, import_closure, stage_sources, write_code_digests
from stages.cli import COMMANDS, STAGE_COMMANDS
from stages.tree_stamp import STAMP_NAMES

REPO = Path(__file__).resolve().parents[1]
# Every pipeline file: DVC builds one graph from all of them. The stamps and each per-shard stage family have
# their own file, so that running one of their items rewrites only that file's dvc.lock (docs/pipeline.md,
# "Pipeline files").
PIPELINE_FILES = (
    "dvc.yaml",
    "stamps/dvc.yaml",
    "features/extract/dvc.yaml",
    "features/audio/dvc.yaml",
    "features/proposals/dvc.yaml",
)
CODE_STAGE = "stamps/dvc.yaml:code_digest"
CODE_DIR = "data/code"


def pipeline_stages() -> dict[str, dict]:
    """DVC's stage name -> stage body (a foreach / matrix stage's ``do``, once) of every pipeline file.
    Stages of ``stamps/dvc.yaml`` are named as DVC names them: ``stamps/dvc.yaml:trees``."""
    found = {}
    for file in PIPELINE_FILES:
        for name, stage in yaml.safe_load((REPO / file).read_text())["stages"].items():
            found[name if file == "dvc.yaml" else f"{file}:{name}"] = stage.get("do", stage)
    return found


def stage_file(name: str) -> str:
    """The pipeline file of a ``pipeline_stages`` name."""
    return name.split(":")[0] if ":" in name else "dvc.yaml"


def stage_commands() -> dict[str, tuple[str, list[str]]]:
    """stage name -> (avs sub-command, deps) of every pipeline file (foreach/matrix stages once)."""
    out = {}
    for name, body in pipeline_stages().items():
        command = body["cmd"].split()
        assert command[0] == "avs", f"stage {name}: command does not start with avs"
        out[name] = (command[1], [str(d) for d in body.get("deps", [])])
    return out


def code_dep(command: str) -> str:
    return f"{CODE_DIR}/{command}.json"


@pytest.mark.parametrize("stage", sorted(set(stage_commands()) - {CODE_STAGE}))
def test_every_stage_depends_on_its_command_code_digest(stage):
    command, deps = stage_commands()[stage]
    assert code_dep(command) in deps, f"pipeline stage {stage!r} (avs {command}) lacks the dep {code_dep(command)}"
    by_hand = [d for d in deps if d.split("/")[0] in PACKAGES]
    assert not by_hand, f"pipeline stage {stage!r} lists sources by hand ({by_hand}): depend on {code_dep(command)}"


def test_the_code_digest_stage_depends_on_every_package_and_writes_the_folder():
    body = pipeline_stages()[CODE_STAGE]
    assert sorted(body["deps"]) == sorted(PACKAGES)
    assert body["outs"] == [CODE_DIR] and body["cmd"] == f"avs code-digest --out-dir {CODE_DIR}"


def test_every_stage_command_gets_a_digest(tmp_path):
    commands = {name: module for name, (module, _) in STAGE_COMMANDS.items() if name != "code-digest"}
    write_code_digests(REPO, commands, tmp_path)
    used = {command for command, _ in stage_commands().values()} - {"code-digest"}
    assert used <= {p.stem for p in tmp_path.glob("*.json")}


def test_closure_follows_lazy_and_package_imports():
    closure = import_closure(REPO, "stages.extract")
    assert {"pipeline/__init__.py", "pipeline/media/decoding.py", "stages/extract.py"} <= closure
    assert "stages/cli.py" not in closure  # argument dispatch: never an input of a stage's outputs


def test_package_data_counts():
    assert "train/report/templates/report.html.j2" in stage_sources(REPO, "stages.evaluate")
    assert not any(p.endswith(".j2") for p in stage_sources(REPO, "stages.extract"))


def _copy_sources(root: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))


def test_a_change_reruns_exactly_the_commands_that_run_it(tmp_path):
    _copy_sources(tmp_path)
    commands = {"extract": "stages.extract", "audio": "stages.audio", "evaluate": "stages.evaluate"}
    before = {c: code_digest(tmp_path, c, m)["sha256"] for c, m in commands.items()}
    assert "pipeline/extraction.py" in import_closure(tmp_path, "stages.extract")
    assert "pipeline/extraction.py" not in import_closure(tmp_path, "stages.audio")
    with open(tmp_path / "pipeline/extraction.py", "a") as fh:
        fh.write("\n# an edit\n")
    after = {c: code_digest(tmp_path, c, m)["sha256"] for c, m in commands.items()}
    assert after["extract"] != before["extract"] and after["audio"] == before["audio"]
    (tmp_path / "train/report/templates/report.html.j2").write_text("edited")
    assert code_digest(tmp_path, "evaluate", "stages.evaluate")["sha256"] != after["evaluate"]


def test_a_new_lazy_import_joins_the_closure(tmp_path):
    _copy_sources(tmp_path)
    assert "pipeline/labels.py" not in import_closure(tmp_path, "stages.audio")
    with open(tmp_path / "stages/audio.py", "a") as fh:
        fh.write("\n\ndef _later():\n    from pipeline.labels import __doc__  # noqa\n")
    assert "pipeline/labels.py" in import_closure(tmp_path, "stages.audio")


def test_digest_files_are_rewritten_only_when_they_change(tmp_path):
    commands = {"tree-stamp": "stages.tree_stamp"}
    assert write_code_digests(REPO, commands, tmp_path) == ["tree-stamp"]
    assert write_code_digests(REPO, commands, tmp_path) == []


def test_stages_folder_holds_the_dvc_stages_and_commands_the_others():
    """``stages/<name>.py`` is a dvc.yaml stage's command; the commands that are not stages (``predict``,
    ``report``) live in ``stages/commands/``."""
    from stages.cli import OTHER_COMMANDS, STAGE_COMMANDS

    dvc_modules = {COMMANDS[command][0] for command, _ in stage_commands().values()}
    assert dvc_modules == {module for module, _ in STAGE_COMMANDS.values()}
    assert all(module.startswith("stages.commands.") for module, _ in OTHER_COMMANDS.values())
    helpers = {"__init__", "cli", "common"}
    top_level = {f"stages.{p.stem}" for p in (REPO / "stages").glob("*.py") if p.stem not in helpers}
    assert top_level == dvc_modules, f"stages/ modules that are not dvc.yaml stages: {sorted(top_level - dvc_modules)}"


# ---------------------------------------------------------------- deps that name datasets
# DVC 3.67.1 cannot build train's and evaluate's feature deps from train.datasets / evaluate.datasets: a list
# param interpolated into a deps entry fails ("Cannot interpolate data of type 'list'"), `deps: ${...}` fails the
# schema check ("expected a list"), and a stage cannot depend on a glob. So dvc.yaml lists them by hand and this
# test keeps the two files in step (docs/pipeline.md, "Training on other datasets").
FEATURE_FOLDERS = ("extract", "audio", "proposals")
FEATURE_DEP = re.compile(r"data/[^/]+/(extract|audio|proposals)")


def feature_deps(datasets: list[str]) -> list[str]:
    """The feature folders ``train`` and ``evaluate`` read for ``datasets``, in dvc.yaml's order."""
    return [f"data/{dataset}/{folder}" for dataset in datasets for folder in FEATURE_FOLDERS]


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_feature_deps_follow_the_params_datasets(stage):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    deps = stage_commands()[stage][1]
    listed = {dep for dep in deps if FEATURE_DEP.fullmatch(dep)}
    wanted = set(feature_deps(params[stage]["datasets"]))
    missing, extra = sorted(wanted - listed), sorted(listed - wanted)
    assert not (missing or extra), (
        f"dvc.yaml stage {stage!r} deps disagree with params.yaml {stage}.datasets: missing {missing}, "
        f"not read {extra}; edit that stage's deps (docs/pipeline.md, 'Training on other datasets')"
    )


def test_every_source_dep_exists():
    """A dep naming a project file that does not exist (a module turned package) fails `dvc repro` of that stage."""
    deps = {str(d) for body in pipeline_stages().values() for d in body.get("deps", [])}
    missing = sorted(d for d in deps if d.split("/")[0] in PACKAGES and not (REPO / d).exists())
    assert not missing, f"dvc.yaml deps name project sources that do not exist: {missing}"


def test_every_pipeline_file_is_checked():
    """A dvc.yaml these tests do not read would escape every check above."""
    tracked = subprocess.run(["git", "ls-files", "dvc.yaml", "*/dvc.yaml"], cwd=REPO, capture_output=True, text=True)
    assert sorted(tracked.stdout.split()) == sorted(PIPELINE_FILES)


@pytest.mark.parametrize("stage", sorted(pipeline_stages()))
def test_every_stage_runs_in_the_repository_root(stage):
    """Commands, deps and outs of every file read from the repository root (``wdir: ..`` in stamps/dvc.yaml),
    as these tests, tests/test_dvc_remote.py and the benchmarks read them."""
    file = REPO / stage_file(stage)
    workdir = (file.parent / pipeline_stages()[stage].get("wdir", ".")).resolve()
    assert workdir == REPO.resolve(), f"{file.relative_to(REPO)} stage {stage!r} runs in {workdir}"


def test_the_stamp_stages_have_their_own_file():
    """DVC rewrites a stage's whole dvc.lock after running it: the always-changed stages stay out of the
    root file, whose lock is large at AVSBench size."""
    always = sorted(name for name, body in pipeline_stages().items() if body.get("always_changed"))
    assert always == ["stamps/dvc.yaml:trees"]


def test_every_stamp_feeds_the_stage_of_its_dataset():
    """stamps/dvc.yaml:trees (``avs tree-stamp --out-dir data/stamps``) writes D/source_tree.json for every dataset
    of manifest.datasets and D/maskige_tree.json for every tree of proposals.maskige_trees (STAMP_NAMES): each is
    a dependency of the item of the same dataset of a stage with a foreach over that same mapping, and the stage
    lists both mappings as params (a tree added there is stamped on the next run)."""
    trees = pipeline_stages()["stamps/dvc.yaml:trees"]
    assert trees["cmd"] == "avs tree-stamp --out-dir data/stamps" and trees["outs"] == [
        {"data/stamps": {"persist": True}}
    ]
    mappings = {"source": "manifest.datasets", "maskige": "proposals.maskige_trees"}
    assert sorted(trees["params"]) == sorted(mappings.values())
    for kind, name in STAMP_NAMES.items():
        path = f"data/stamps/${{key}}/{name}"
        foreach = f"${{{mappings[kind]}}}"
        readers = [
            name
            for file in PIPELINE_FILES
            for name, stage in yaml.safe_load((REPO / file).read_text())["stages"].items()
            if stage.get("foreach") == foreach and path in stage["do"]["deps"]
        ]
        assert readers, f"no stage with foreach {foreach} depends on {path}"


def test_per_shard_stages_are_not_in_the_root_file():
    """A per-shard (matrix) stage has one item per dataset shard: in the root file, each of its items run would
    rewrite the root lock with every item's entry (docs/pipeline.md, "Pipeline files")."""
    per_shard = sorted(name for name, body in pipeline_stages().items() if "matrix" in body)
    assert per_shard and all(stage_file(name).startswith("features/") for name in per_shard), per_shard
