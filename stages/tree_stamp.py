"""``avs tree-stamp``: the stamps the manifests (and ``combo_maskiges@D``) depend on instead of whole raw trees.

``avs tree-stamp --out-dir data/stamps`` is stamps/dvc.yaml's ``trees`` stage, run on every ``dvc repro``
(``always_changed``): in one process it stamps every source tree of ``manifest.datasets`` into
``data/stamps/D/source_tree.json`` and every tree of ``proposals.maskige_trees`` into
``data/stamps/D/maskige_tree.json``. A stamp file is rewritten only when its tree changed, so DVC reruns only
that dataset's manifest (or ``combo_maskiges@D``) (docs/pipeline.md, "Source-tree stamps"). One stage rather than
one per tree: each DVC stage item costs ~0.1 s of DVC and interpreter start-up on every ``dvc repro``.
``--tree PATH --out FILE`` stamps one tree. A teammate who pulled the features has the stamps but not the trees:
a stamp of an absent tree is kept as it is ("Sharing features in a team").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Literal

from pipeline.params import DatasetName, from_section, load_params
from pipeline.tree_stamp import NOT_READ_BY_SOURCE, TreeStampError, read_stamp, stamp_tree, write_stamp

STAMP_NAMES = {"source": "source_tree.json", "maskige": "maskige_tree.json"}  # the files of data/stamps/D/


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--out-dir", help="stamp every tree params.yaml names into OUT_DIR/D/ (stamps/dvc.yaml's trees stage)"
    )
    target.add_argument("--tree", help="the one folder to stamp (a release root or a maskige tree); needs --out")
    parser.add_argument("--out", help="with --tree: the stamp JSON file (rewritten only when it changes)")
    parser.add_argument(
        "--source",
        choices=sorted(NOT_READ_BY_SOURCE),
        help="with --tree: the manifest source reading the tree: folders it never reads are not stamped",
    )
    parser.add_argument("--params", default="params.yaml", help="with --out-dir: params file (default: %(default)s)")


def _keep_absent_tree_stamp(tree: str, out: str) -> None:
    """The tree is absent: keep a valid stamp of that tree (a clone without the raw data), else fail."""
    if not os.path.exists(out):
        raise TreeStampError(f"{tree}: tree not found, and there is no stamp {out} to keep")
    kept = read_stamp(out)
    if kept.tree != tree:
        raise TreeStampError(f"{out}: stamp of tree {kept.tree}, not of {tree} (which is absent, so not stamped)")
    print(f"tree-stamp: {tree} is absent; the stamp {out} is kept ({kept.files} files, digest {kept.digest[:12]})")


def stamp_one(tree: str, out: str, source: str | None) -> None:
    """Stamp ``tree`` into ``out`` (or keep the stamp of an absent tree) and say so in one line."""
    if not os.path.exists(tree):  # a broken link to an unmounted disk is absent too
        _keep_absent_tree_stamp(tree, out)
        return
    start = time.perf_counter()
    stamp = stamp_tree(tree, NOT_READ_BY_SOURCE[source] if source else frozenset())
    written = write_stamp(stamp, out)
    print(
        f"tree-stamp -> {out}: {stamp.files} files, {stamp.bytes / 1e6:.1f} MB under {tree}, "
        f"digest {stamp.digest[:12]} ({'written' if written else 'unchanged'}) in {time.perf_counter() - start:.2f} s"
    )


def run(args: argparse.Namespace) -> int:
    if args.tree is not None:
        if not args.out:
            raise TreeStampError("--tree needs --out (the stamp file)")
        stamp_one(args.tree, args.out, args.source)
        return 0
    if args.out or args.source:
        raise TreeStampError("--out and --source go with --tree; --out-dir stamps the trees params.yaml names")
    return stamp_all(named_trees(load_params(args.params)), Path(args.out_dir))


@dataclasses.dataclass
class _SourceTree:
    """What a stamp needs of a ``manifest.datasets`` entry (the manifest stage checks the rest of it)."""

    name: DatasetName
    root: str
    source: Literal[tuple(NOT_READ_BY_SOURCE)]  # type: ignore[valid-type]


@dataclasses.dataclass
class _MaskigeTrees:
    maskige_trees: dict[DatasetName, str] = dataclasses.field(default_factory=dict)


def named_trees(params: dict) -> dict[tuple[str, str], tuple[str, str | None]]:
    """``(dataset, "source" | "maskige") -> (tree, manifest source or None)`` for every tree ``params`` names:
    each dataset of ``manifest.datasets`` and each tree of ``proposals.maskige_trees``."""
    trees: dict[tuple[str, str], tuple[str, str | None]] = {}
    datasets = _mapping(_mapping(params.get("manifest"), "manifest").get("datasets"), "manifest.datasets")
    for name, entry in datasets.items():
        entry = _mapping(entry, f"manifest.datasets.{name}")
        checked = {"name": name, "root": entry.get("root"), "source": entry.get("source")}
        tree = from_section(_SourceTree, checked, f"manifest.datasets.{name}")
        trees[name, "source"] = (tree.root, tree.source)
    proposals = _mapping(params.get("proposals"), "proposals")
    maskige = from_section(_MaskigeTrees, {"maskige_trees": proposals.get("maskige_trees") or {}}, "proposals")
    trees.update({(name, "maskige"): (tree, None) for name, tree in maskige.maskige_trees.items()})
    return trees


def _mapping(value: object, where: str) -> dict:
    """``value`` (params.yaml's ``where``) as a mapping; None is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TreeStampError(f"params.yaml {where} must be a mapping, got {type(value).__name__}")
    return value


def stamp_all(trees: dict[tuple[str, str], tuple[str, str | None]], out_dir: Path) -> int:
    """Stamp each ``(dataset, kind) -> (tree, source)`` into ``out_dir/dataset/<kind's file>``; remove stamp files
    of trees no longer named. A tree that fails is one line; the others are still stamped; exit 1 if any failed.
    ``out_dir`` exists afterwards even with no tree named: it is the stage's DVC output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for (dataset, kind), (tree, source) in sorted(trees.items()):
        out = out_dir / dataset / STAMP_NAMES[kind]
        try:
            stamp_one(tree, str(out), source)
        except (TreeStampError, OSError) as exc:
            print(f"avs tree-stamp: error: {dataset} ({kind} tree): {exc}", file=sys.stderr)
            failed += 1
    _remove_unnamed(out_dir, {(dataset, STAMP_NAMES[kind]) for dataset, kind in trees})
    return 1 if failed else 0


def _remove_unnamed(out_dir: Path, named: set[tuple[str, str]]) -> None:
    """Stamp files under ``out_dir`` of a dataset or tree params.yaml no longer names (only this stage's own
    files: ``D/source_tree.json`` and ``D/maskige_tree.json``; a folder left empty goes too). ``out_dir`` exists:
    :func:`stamp_all` made it."""
    for folder in sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        for name in STAMP_NAMES.values():
            stale = folder / name
            if (folder.name, name) not in named and stale.is_file() and not stale.is_symlink():
                stale.unlink()
                print(f"tree-stamp: removed {stale} (params.yaml no longer names its tree)")
        if not any(folder.iterdir()):
            folder.rmdir()
