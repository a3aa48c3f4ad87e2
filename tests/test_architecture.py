"""The "one place" claims of docs/architecture.md and docs/CONVENTIONS.md, kept true.

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
