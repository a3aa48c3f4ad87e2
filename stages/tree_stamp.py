"""``avs tree-stamp --tree PATH --out FILE``: the stamp a manifest depends on instead of its whole source tree.

dvc.yaml's ``source_tree@D`` and ``maskige_tree@D`` stages run it on every ``dvc repro`` (``always_changed``);
the file is rewritten only when the tree changed, so DVC reruns the manifest (or ``combo_maskiges@D``)
only then (docs/pipeline.md, "Source-tree stamps"). A teammate who pulled the features has the stamp but
not the tree: the stamp is then kept as it is ("Sharing features in a team").
"""

from __future__ import annotations

import argparse
import os
import time

from pipeline.tree_stamp import NOT_READ_BY_SOURCE, TreeStampError, read_stamp, stamp_tree, write_stamp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tree", required=True, help="the folder to stamp (a release root or a maskige tree)")
    parser.add_argument("--out", required=True, help="the stamp JSON file (rewritten only when it changes)")
    parser.add_argument(
        "--source",
        choices=sorted(NOT_READ_BY_SOURCE),
        help="the manifest source reading the tree: folders it never reads are not stamped (default: every folder)",
    )


def _keep_absent_tree_stamp(tree: str, out: str) -> int:
    """The tree is absent: keep a valid stamp of that tree (a clone without the raw data), else fail."""
    if not os.path.exists(out):
        raise TreeStampError(f"{tree}: tree not found, and there is no stamp {out} to keep")
    kept = read_stamp(out)
    if kept.tree != tree:
        raise TreeStampError(f"{out}: stamp of tree {kept.tree}, not of {tree} (which is absent, so not stamped)")
    print(f"tree-stamp: {tree} is absent; the stamp {out} is kept ({kept.files} files, digest {kept.digest[:12]})")
    return 0


def run(args: argparse.Namespace) -> int:
    if not os.path.exists(args.tree):  # a broken link to an unmounted disk is absent too
        return _keep_absent_tree_stamp(args.tree, args.out)
    start = time.perf_counter()
    stamp = stamp_tree(args.tree, NOT_READ_BY_SOURCE[args.source] if args.source else frozenset())
    written = write_stamp(stamp, args.out)
    print(
        f"tree-stamp -> {args.out}: {stamp.files} files, {stamp.bytes / 1e6:.1f} MB under {args.tree}, "
        f"digest {stamp.digest[:12]} ({'written' if written else 'unchanged'}) in {time.perf_counter() - start:.2f} s"
    )
    return 0
