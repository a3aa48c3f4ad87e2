"""The code a DVC stage runs, as one small JSON file per stage command: what dvc.yaml's stages depend on
instead of listing every source file they import.

Listing a stage's source files in its ``deps`` costs at every size: DVC checks each listed file or folder
of each stage item on every ``dvc status``, and after every item it runs it rewrites the whole
``dvc.lock``, in which those entries were two thirds of the bytes (about 1.4 of 2.1 KB per item; a
1.0 s rewrite per rerun item for the 177 KB lock of AVSBench's 77 items). ``avs code-digest``
(stamps/dvc.yaml's ``code_digest`` stage, which depends on the source folders themselves) writes
``{data.root}/code/<command>.json`` for every stage command, and each stage item depends on its
command's file: a code change reruns exactly the stages whose imported sources changed, one file checked
per item (docs/pipeline.md, "Code digests").

A command's sources are found from the code itself, not from a list kept by hand: the import closure of
its module, read with ``ast`` (imports inside functions count, the stages import lazily; so do strings
naming a project module, which registries import with ``importlib``; importing ``a.b.c`` runs
``a/__init__.py`` and ``a/b/__init__.py`` too), plus the package data (non-Python files such as report
templates) in the folders of the packages it imports.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

from pipeline.atomic import write_bytes_if_changed
from pipeline.hashing import sha256_of_file, sha256_of_named_digests

PACKAGES = ("pipeline", "stages", "train")  # the project's top-level packages
MODULE_NAME = re.compile(r"(pipeline|stages|train)(\.[A-Za-z_][A-Za-z0-9_]*)+")
FORMAT = 1  # bump when what a digest covers changes: every stage then reruns once


class CodeDigestError(ValueError):
    """A source that cannot be read or parsed; one line naming the file."""


def module_file(root: Path, module: str) -> Path | None:
    """The file that defines ``module`` under ``root`` (``a/b.py`` or ``a/b/__init__.py``), if any."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parse(path: Path, root: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise CodeDigestError(f"{path.relative_to(root)}: cannot read its imports ({exc})") from None


def imported_modules(path: Path, root: Path) -> set[str]:
    """The project modules (dotted names) that the source file ``path`` imports, anywhere in it."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found: set[str] = set()
    for node in ast.walk(_parse(path, root)):
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


def import_closure(root: Path, start_module: str) -> set[str]:
    """Root-relative paths (posix) of every project file executed when ``start_module`` is imported and run,
    package ``__init__`` files included."""
    seen: set[Path] = set()
    todo = [start_module]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(root, ".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path, root))
    return {p.relative_to(root).as_posix() for p in seen}


def package_data(root: Path, sources: set[str]) -> set[str]:
    """Non-Python files (templates, configs) in the folder of each package among ``sources`` (an
    ``__init__.py``), subfolders included except other packages, which count only when imported."""
    found: set[str] = set()
    for init in (s for s in sources if s.endswith("/__init__.py")):
        for folder, dirs, files in os.walk(root / os.path.dirname(init)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not os.path.isfile(f"{folder}/{d}/__init__.py"))
            found.update(
                Path(folder, name).relative_to(root).as_posix()
                for name in files
                if not name.endswith((".py", ".pyc")) and not name.startswith(".")
            )
    return found


def stage_sources(root: Path, module: str) -> list[str]:
    """Every source file the stage module ``module`` runs or reads, sorted."""
    closure = import_closure(root, module)
    return sorted(closure | package_data(root, closure))


def code_digest(root: Path, command: str, module: str) -> dict:
    """The JSON record of one stage command's code: its sources' sha256 and one digest over them."""
    files = {path: sha256_of_file(root / path) for path in stage_sources(root, module)}
    return {
        "format": FORMAT,
        "command": command,
        "module": module,
        "sha256": sha256_of_named_digests(sorted(files.items())),
        "files": files,
    }


def write_code_digests(root: Path, commands: dict[str, str], out_dir: str | Path) -> list[str]:
    """``<out_dir>/<command>.json`` for each command -> module; a file is rewritten only when its bytes change
    (so an untouched one keeps its time). Returns the commands whose file was written."""
    written = []
    for command, module in sorted(commands.items()):
        text = json.dumps(code_digest(root, command, module), indent=1, sort_keys=True) + "\n"
        if write_bytes_if_changed(Path(out_dir) / f"{command}.json", text.encode("utf-8")):
            written.append(command)
    return written
