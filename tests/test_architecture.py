"""The "one place" claims and the layering of docs/architecture.md and docs/CONVENTIONS.md, kept true.

Each rule names an operation and the only module (or package) allowed to do it. The scan reads every
project source file with ``ast`` (imports inside functions included), so a new file that breaks a rule
fails here with its file and line. ``test_a_planted_violation_is_found`` shows each rule catches one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages", "train")


@dataclass(frozen=True)
class Rule:
    what: str  # the operation, as the docs say it
    home: tuple[str, ...]  # repo-relative file or folder prefixes allowed to do it
    imports: tuple[str, ...] = ()  # a module whose import is the operation
    calls: tuple[str, ...] = ()  # dotted calls, e.g. "torch.load"


RULES = (
    Rule("torch.load (the one safe loader)", ("pipeline/torch_files.py",), calls=("torch.load",)),
    Rule("HDF5 access", ("pipeline/shards/",), imports=("h5py",)),
    Rule("spawning processes (ffmpeg)", ("pipeline/media",), imports=("subprocess",)),
    Rule("renaming files into place", ("pipeline/atomic.py",), calls=("os.replace", "os.rename")),
)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def violations(rule: Rule, source: str, rel: str) -> list[str]:
    """``file:line`` of every use of ``rule``'s operation in ``source`` outside its home."""
    if any(rel.startswith(home) for home in rule.home):
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(name.split(".")[0] in rule.imports for name in names):
            found.append(f"{rel}:{node.lineno}")
        if isinstance(node, ast.Call) and _dotted(node.func) in rule.calls:
            found.append(f"{rel}:{node.lineno}")
    return found


def project_sources() -> list[tuple[str, str]]:
    files = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))
    return [(p.relative_to(REPO).as_posix(), p.read_text()) for p in files]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.what)
def test_each_operation_lives_in_its_one_place(rule):
    found = [v for rel, source in project_sources() for v in violations(rule, source, rel)]
    assert not found, f"{rule.what} belongs in {rule.home} only; found at {found}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.what)
def test_a_planted_violation_is_found(rule):
    planted = "\n".join(
        [f"import {m}" for m in rule.imports]
        + [f"def f():\n    import {c.split('.')[0]}\n    {c}('x')" for c in rule.calls]
    )
    assert violations(rule, planted, "train/planted.py")
    assert violations(rule, planted, rule.home[0] + ("" if rule.home[0].endswith(".py") else "x.py")) == []


# The layering of docs/CONVENTIONS.md: stages -> pipeline, train; train -> pipeline. A package never
# imports one above it, neither with an import statement (inside functions included) nor by a module
# name given as a string (registries load their members with importlib).
LAYERS_BELOW = {"pipeline": ("train", "stages"), "train": ("stages",)}


def _is_project_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(source: str) -> list[tuple[str, int]]:
    """(module, line) of every absolute import and every string naming a project module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count(".") >= 1:
            if node.value.split(".")[0] in PACKAGES and _is_project_module(node.value):
                found.append((node.value, node.lineno))
    return found


def layering_violations(source: str, rel: str) -> list[str]:
    """``file:line -> module`` of every import of a package above ``rel``'s own."""
    forbidden = LAYERS_BELOW.get(rel.split("/")[0], ())
    return [
        f"{rel}:{line} -> {module}" for module, line in imported_modules(source) if module.split(".")[0] in forbidden
    ]


def test_no_package_imports_a_layer_above_it():
    found = [v for rel, source in project_sources() for v in layering_violations(source, rel)]
    assert not found, f"pipeline never imports train or stages, and train never imports stages; found {found}"


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("pipeline/planted.py", "from train.models import build_model"),
        ("pipeline/planted.py", "def f():\n    import stages.cli"),
        ("pipeline/planted.py", "MODULES = ('train.models.combo',)"),
        ("train/planted.py", "from stages.common import StageContext"),
    ],
)
def test_a_planted_layering_violation_is_found(rel, source):
    assert layering_violations(source, rel)


def test_allowed_directions_are_not_flagged():
    assert not layering_violations("from pipeline.shards import ShardReader", "train/planted.py")
    assert not layering_violations("import train.models\nimport pipeline.params", "stages/planted.py")
    assert not layering_violations("MESSAGE = 'train.max_steps must be >= 1'", "pipeline/planted.py")
