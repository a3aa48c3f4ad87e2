"""``avs code-digest --out-dir DIR``: one JSON file per stage command naming the sources it runs, with their sha256.

stamps/dvc.yaml's ``code_digest`` stage runs it whenever a file of pipeline/, stages/ or train/ changes; each
dvc.yaml stage depends on its command's file, which changes only when that command's own sources do
(pipeline/code_digest.py; docs/pipeline.md, "Code digests").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pipeline
from pipeline.code_digest import write_code_digests

THIS_COMMAND = "code-digest"  # its stage depends on the source folders themselves, not on a digest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", required=True, help="folder of the <command>.json files (e.g. data/code)")


def run(args: argparse.Namespace) -> int:
    from stages.cli import STAGE_COMMANDS

    start = time.perf_counter()
    root = Path(pipeline.__file__).resolve().parent.parent  # the checkout whose code the stages import
    commands = {name: module for name, (module, _) in STAGE_COMMANDS.items() if name != THIS_COMMAND}
    written = write_code_digests(root, commands, args.out_dir)
    print(
        f"code-digest -> {args.out_dir}: {len(commands)} stage commands, {len(written)} changed"
        f"{' (' + ', '.join(written) + ')' if written else ''} in {time.perf_counter() - start:.2f} s"
    )
    return 0
