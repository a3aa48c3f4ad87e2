"""Every dvc.yaml stage depends on all project source files its command imports (transitively).

A dependency missing from ``deps`` means a code change that alters a stage's output would not
rerun it, and DVC would serve stale results. The import graph is read from the sources with
``ast``: imports inside functions count (the stages import lazily), and so do strings naming a
project module (registries import their members with ``importlib``)."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stages.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages", "train")
MODULE_NAME = re.compile(r"(pipeline|stages|train)(\.[A-Za-z_][A-Za-z0-9_]*)+")
# Files a stage imports that cannot change its outputs.
NOT_OUTPUT_RELEVANT = {
    "stages/cli.py": "argument dispatch only",
}
# Every pipeline file: DVC builds one graph from all of them. The always-changed tree stamps have their own file,
# so that running them rewrites only its small dvc.lock (docs/pipeline.md, "Source-tree stamps").
PIPELINE_FILES = ("dvc.yaml", "stamps/dvc.yaml")


def module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.fullmatch(node.value):
            found.add(node.value)  # registries import their modules by name (importlib.import_module)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def project_closure(start_module: str) -> set[str]:
    """Repository-relative paths of every project file executed when ``start_module`` is imported
    (package ``__init__`` files included)."""
    seen: set[Path] = set()
    todo = [start_module]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imported_modules(path))
    return {str(p.relative_to(REPO)) for p in seen}


def pipeline_stages() -> dict[str, dict]:
    """DVC's stage name -> stage body (a foreach / matrix stage's ``do``, once) of every pipeline file.
    Stages of ``stamps/dvc.yaml`` are named as DVC names them: ``stamps/dvc.yaml:source_tree``."""
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


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(stage_commands()))
def test_stage_deps_cover_its_imported_sources(stage):
    command, deps = stage_commands()[stage]
    module = COMMANDS[command][0]
    missing = sorted(p for p in project_closure(module) if not covered(p, deps) and p not in NOT_OUTPUT_RELEVANT)
    assert not missing, f"dvc.yaml stage {stage!r} (avs {command}) imports files missing from its deps: {missing}"


def test_closure_follows_lazy_and_package_imports():
    closure = project_closure("stages.extract")
    assert (
        "pipeline/__init__.py" in closure and "pipeline/media/decoding.py" in closure and "stages/extract.py" in closure
    )


def test_shortened_deps_are_caught():
    command, deps = stage_commands()["extract"]
    files = project_closure(COMMANDS[command][0])
    shortened = [d for d in deps if d != "pipeline/media" and d != "pipeline"]
    assert any(not covered(p, shortened) for p in files if p not in NOT_OUTPUT_RELEVANT)


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
    assert always == ["stamps/dvc.yaml:maskige_tree", "stamps/dvc.yaml:source_tree"]


def test_every_stamp_item_feeds_a_stage_of_the_root_file():
    """Plain ``dvc repro`` collects dvc.yaml's stages and what they depend on: an item of stamps/dvc.yaml whose
    stamp no dvc.yaml stage reads (item for item: the same foreach) would never run."""
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in yaml.safe_load((REPO / "stamps" / "dvc.yaml").read_text())["stages"].items():
        for out in stage["do"]["outs"]:
            path = next(iter(out)) if isinstance(out, dict) else out
            readers = [n for n, s in root.items() if s.get("foreach") == stage["foreach"] and path in s["do"]["deps"]]
            assert readers, f"stamps/dvc.yaml stage {name!r}: no dvc.yaml stage with its foreach reads {path}"
