"""No import cycle among the project's modules, lazy or not.

A cycle (``train/evaluate.py`` -> ``train/report`` -> ``train/evaluate.py``) works only while one of its
imports stays inside a function, and breaks the day someone moves it to the top; it also says that two
modules are one. The graph is read from the sources with ``ast``: every ``import`` statement counts,
at module level or inside a function. ``from package import name`` points at ``package.name`` when
that is a module, else at the package. Being a submodule of a package is not an edge (Python runs a
package's ``__init__`` first, which a package re-exporting its parts does by design), nor is a module
named in a string (the registries load their members by name)."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.code_digest import PACKAGES
from pipeline.code_digest import module_file as _module_file
from tests.test_dvc_deps import REPO


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, text: str | None = None) -> set[Path]:
    """Project files ``path`` (its source ``text`` when given) imports, at any depth of its code."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(text if text is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if _module_file(REPO, full) is not None else base)
    files = {_module_file(REPO, t) for t in targets if t.split(".")[0] in PACKAGES}
    return {f for f in files if f is not None and f != path}


def project_graph() -> dict[Path, set[Path]]:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    return {path: imports_of(path) for path in files}


def find_cycle(graph: dict[Path, set[Path]]) -> list[Path] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[Path, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def cyclic_groups(graph: dict[Path, set[Path]]) -> list[set[Path]]:
    """The sets of files that import one another in a circle (strongly connected components of two or
    more files): remove a cycle's edge and look again until none is left, merging what overlaps."""
    graph = {k: set(v) for k, v in graph.items()}
    groups: list[set[Path]] = []
    while (cycle := find_cycle(graph)) is not None:
        members = set(cycle)
        for group in [g for g in groups if g & members]:
            members |= group
            groups.remove(group)
        groups.append(members)
        graph[cycle[-2]].discard(cycle[-1])
    return groups


# Cycles that predate this test, in code other work owns; each entry must still be a cycle (the test
# says when one is gone), and no other cycle may appear.
KNOWN_CYCLES: dict[frozenset[str], str] = {}  # cycles allowed for now, each with the reason (none left)


def test_project_modules_import_no_cycle():
    groups = {frozenset(str(p.relative_to(REPO)) for p in g) for g in cyclic_groups(project_graph())}
    new = [sorted(g) for g in groups if g not in KNOWN_CYCLES]
    assert not new, f"import cycle(s) among project modules: {new}"
    gone = [sorted(k) for k in KNOWN_CYCLES if k not in groups]
    assert not gone, f"no longer a cycle, remove from KNOWN_CYCLES: {gone}"


def test_a_lazy_cycle_is_found():
    """The check itself: an import inside a function is an edge, and a cycle closed by one is reported."""
    lazy = REPO / "train" / "lazy_probe.py"  # read from the text below, never written
    edges = imports_of(lazy, "def f():\n    from train.evaluate import evaluate\n")
    assert edges == {REPO / "train" / "evaluate.py"}
    graph = project_graph()
    graph[lazy] = edges
    graph[REPO / "train" / "evaluate.py"] = graph[REPO / "train" / "evaluate.py"] | {lazy}
    assert any(group == {lazy, REPO / "train" / "evaluate.py"} for group in cyclic_groups(graph))
    cycle = find_cycle({lazy: edges, REPO / "train" / "evaluate.py": {lazy}})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {lazy, REPO / "train" / "evaluate.py"}
