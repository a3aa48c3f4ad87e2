"""``avs report``: the HTML report of an evaluation folder, or two side by side (``--compare A B``).

An evaluation folder is what ``avs evaluate --out DIR`` writes (``report.json``, ``overlays/``,
``audio/``); ``avs evaluate`` already renders ``DIR/report.html``, so this command is for
re-rendering and for comparing experiments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from train.report import render_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="an evaluation folder (written by `avs evaluate --out`)")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="two evaluation folders side by side")
    parser.add_argument("--labels", nargs=2, metavar=("A", "B"), help="names of the two runs on the page")
    parser.add_argument("--out", help="page to write (default: RUN/report.html; with --compare: compare.html)")


def run(args: argparse.Namespace) -> int:
    if bool(args.run) == bool(args.compare):
        raise ValueError("give one evaluation folder, or --compare RUN_A RUN_B")
    runs = [Path(p) for p in (args.compare or [args.run])]
    for folder in runs:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such evaluation folder")
    out = Path(args.out) if args.out else (Path("compare.html") if args.compare else runs[0] / "report.html")
    labels = args.labels or ([_label(p) for p in runs] if args.compare else None)
    print(f"report: {render_report(runs, out, labels)}")
    return 0


def _label(folder: Path) -> str:
    """A short name for a run: the folder's name, or its parent's when that is the generic 'eval'."""
    folder = folder.resolve()
    return f"{folder.parent.name}/{folder.name}" if folder.name == "eval" else folder.name
