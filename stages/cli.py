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

# name -> module; modules are imported only when their command runs, so `avs --help` stays fast.
COMMANDS = {
    "demo-data": "stages.demo_data",
    "manifest": "stages.manifest",
    "extract": "stages.extract",
    "audio": "stages.audio",
    "proposals": "stages.proposals",
    "train": "stages.train",
    "evaluate": "stages.evaluate",
    "predict": "stages.predict",
}


def _available() -> dict[str, object]:
    modules = {}
    for name, module in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the stage exists but one of its imports is missing: report it
                modules[name] = exc
    return modules


def build_parser(modules: dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avs", description="Audio-visual segmentation pipeline (see README.md).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in modules.items():
        if isinstance(module, Exception):
            sub.add_parser(name, help=f"(unavailable: {module})")
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    if wanted in COMMANDS:
        try:
            modules = {wanted: importlib.import_module(COMMANDS[wanted])}
        except ModuleNotFoundError as exc:
            print(f"avs {wanted}: error: this command is not available ({exc})", file=sys.stderr)
            return 2
    else:
        modules = _available()
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = getattr(args, "_module", None)
    if module is None:
        print(f"avs {args.command}: error: not available in this installation", file=sys.stderr)
        return 2
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"avs {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one line
        if os.environ.get("AVS_DEBUG"):
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"avs {args.command}: error: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
