"""Static SVG charts for the report (matplotlib's SVG canvas: no display, no network, no pyplot state).

Each function returns the ``<svg>`` element as text, ready to inline in the page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    # A fixed salt makes matplotlib derive element ids from their content instead of at random, so the
    # same run gives the same page byte for byte (the report is a DVC output).
    with rc_context({"svg.hashsalt": "avs-report"}):
        FigureCanvasSVG(fig).print_svg(buffer)
    text = buffer.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF creator/date: noise in a page
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE (not allowed inside HTML)


def training_curves(curves: dict[str, list[list[float]]]) -> str | None:
    """dvclive curves {"train/loss_total": [[step, value], ...], "train/lr": ...} -> one SVG with three
    panels: total loss, each loss term, learning rate. None without a loss curve."""

    def series(prefix: str) -> dict[str, list[list[float]]]:
        return {k.split("/")[-1]: v for k, v in curves.items() if k.split("/")[-1].startswith(prefix) and v}

    losses, lr = series("loss_"), series("lr")
    if "loss_total" not in losses:
        return None
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [
        ("total loss", {"loss_total": losses["loss_total"]}, False),
        ("loss terms", {k[5:]: v for k, v in losses.items() if k != "loss_total"}, True),
        ("learning rate", lr, False),
    ]
    for ax, (title, lines, log_scale) in zip(axes, panels):
        for i, (name, points) in enumerate(sorted(lines.items())):
            ax.plot([p[0] for p in points], [p[1] for p in points], lw=1.2, color=COLOURS[i % len(COLOURS)], label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if log_scale and lines and all(p[1] > 0 for pts in lines.values() for p in pts):
            ax.set_yscale("log")
        if len(lines) > 1:
            ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return _svg(fig)


def per_class_iou(rows: Sequence[dict], class_names: dict[int, str] | None = None) -> str | None:
    """Rows {"dataset", "class_id", "iou"} (semantic datasets only) -> a horizontal bar chart per dataset,
    classes sorted by IoU. None when there is no row (binary datasets have no per-class chart)."""
    datasets = sorted({r["dataset"] for r in rows})
    if not datasets:
        return None
    heights = [max(1.5, 0.22 * sum(r["dataset"] == d for r in rows) + 0.8) for d in datasets]
    fig = Figure(figsize=(6, sum(heights)), layout="constrained")
    axes = fig.subplots(len(datasets), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, name in zip(axes, datasets):
        mine = sorted((r for r in rows if r["dataset"] == name), key=lambda r: r["iou"])
        labels = [(class_names or {}).get(r["class_id"], f"class {r['class_id']}") for r in mine]
        ax.barh(range(len(mine)), [r["iou"] for r in mine], color=COLOURS[0])
        ax.set_yticks(range(len(mine)), labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("IoU", fontsize=9)
        ax.set_title(f"{name}: per-class IoU", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return _svg(fig)
