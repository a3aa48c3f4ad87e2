"""The ``avs`` command: one subcommand per pipeline stage.

Exit codes: 0 success; 1 the stage ran but failed (e.g. strict mode with failed videos);
2 a fatal error, reported as one line ``avs <command>: error: <reason>`` (set AVS_DEBUG=1 for
the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). Modules are imported only when their command runs, so
# `avs --help` stays fast (several stages import torch). DVC pipeline stages (dvc.yaml) live in stages/,
# the other commands in stages/commands/.
STAGE_COMMANDS = {
    "demo-data": ("stages.demo_data", "generate the synthetic demo dataset (mp4 + ground truth in AVSBench layouts)"),
    "code-digest": ("stages.code_digest", "write one file per stage command naming its sources and their sha256"),
    "tree-stamp": ("stages.tree_stamp", "stamp a source tree (paths, sizes, times, inodes) so DVC need not walk it"),
    "manifest": ("stages.manifest", "build the manifest CSV of a dataset and its per-shard slices"),
    "extract": ("stages.extract", "extract the T kept frames and 16 kHz mono audio of one shard into HDF5"),
    "audio": ("stages.audio", "compute log-mel [T,96,64] and audio embeddings [T,D] of one extraction shard"),
    "proposals": ("stages.proposals", "class-agnostic SAM-family masks of one shard, encoded as maskiges"),
    "train": ("stages.train", "train COMBO / TransAVS on cached shards (torchrun-ready; --resume continues exactly)"),
    "evaluate": (
        "stages.evaluate",
        "score a checkpoint (M_J / M_F or mIoU / F), per-video CSV, overlays, shuffled- and negative-audio checks",
    ),
}
OTHER_COMMANDS = {
    "report": (
        "stages.commands.report",
        "the HTML evaluation report of an evaluation folder, or two side by side (--compare A B)",
    ),
    "predict": (
        "stages.commands.predict",
        "segment the sounding objects of any video: overlay mp4 + per-second mask PNGs",
    ),
}
COMMANDS = {**STAGE_COMMANDS, **OTHER_COMMANDS}


MAX_REASON = 200  # characters of an error line's reason


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``command``'s module is imported (to add its arguments)."""
    parser = argparse.ArgumentParser(prog="avs", description="Audio-visual segmentation pipeline (see README.md).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        parser = build_parser(wanted)
    except ModuleNotFoundError as exc:
        print(f"avs {wanted}: error: this command is not available ({exc})", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = args._module
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"avs {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one line
        if os.environ.get("AVS_DEBUG"):
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if len(reason) > MAX_REASON:  # library messages can run to pages; the first part names the cause
            reason = reason[: MAX_REASON - 3] + "..."
        print(f"avs {args.command}: error: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
