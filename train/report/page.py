"""The report page: one self-contained HTML page per evaluation, or one page comparing runs.

``avs evaluate`` writes ``report.json`` (summary, per-video scores, the strips it drew, the training
curves) next to ``overlays/`` and ``audio/``; :func:`render_report` turns one or more such folders
into a single page with everything inline (CSS, JS, SVG charts, images and audio as data URIs), so
it opens from disk, by e-mail or on a machine without network access. Templates: jinja2
(``templates/report.html.j2``); charts: matplotlib's SVG canvas (:mod:`train.report.charts`).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_path
from train.report import charts

JPEG_QUALITY = 85


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """An evaluation folder's ``report.json``, with a clear one-line error when it is missing or broken."""
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no report data (run `avs evaluate --out {run_dir}` first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def strip_rows(png: Path, seconds: int, header_px: int) -> list[str]:
    """A labelled strip PNG (header + one row per second) -> one JPEG data URI per second."""
    from PIL import Image

    with Image.open(png) as image:
        image = image.convert("RGB")
        row_h = (image.height - header_px) // max(seconds, 1)
        rows = []
        for t in range(seconds):
            buffer = io.BytesIO()
            image.crop((0, header_px + t * row_h, image.width, header_px + (t + 1) * row_h)).save(
                buffer, format="JPEG", quality=JPEG_QUALITY
            )
            rows.append(data_uri(buffer.getvalue(), "image/jpeg"))
    return rows


def _score_keys(task: str) -> tuple[str, str]:
    return ("J", "F") if task == "binary" else ("mIoU", "F")


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scored dataset: videos, the two headline scores, the shuffled-audio score and drop."""
    rows = []
    for name in report["eval_params"]["datasets"]:
        m = report["metrics"].get(name) or {}
        if not m.get("num_videos"):
            rows.append({"dataset": name, "videos": 0, "note": m.get("note", "not scored")})
            continue
        first, second = ("M_J", "M_F") if "M_J" in m else ("mIoU", "F")
        shuffled = m.get("shuffled_audio") or {}
        rows.append(
            {
                "dataset": name,
                "videos": m["num_videos"],
                "names": (first, second),
                "scores": (m[first], m[second]),
                "shuffled": shuffled.get(first),
                "drop": m.get("audio_dependence"),
            }
        )
    return rows


CONDITION_LABELS = {
    "own": "own audio",
    "shuffled": "shuffled audio",
    "silence": "silence",
    "noise": "noise",
    "offscreen": "off-screen audio",
}


def negative_audio_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (dataset, audio condition): the fraction of frames with any predicted sounding pixel
    and the predicted-area ratio, or why the condition was skipped (reports of older versions: none)."""
    rows = []
    for name in report["eval_params"]["datasets"]:
        measures = (report["metrics"].get(name) or {}).get("negative_audio") or {}
        for condition, label in CONDITION_LABELS.items():
            m = measures.get(condition)
            if m is None:
                continue
            rows.append(
                {
                    "dataset": name,
                    "condition": label,
                    "negative": condition not in ("own", "shuffled"),
                    "frames": m.get("pred_frame_fraction"),
                    "area": m.get("pred_area_ratio"),
                    "skipped": m.get("skipped"),
                }
            )
    return rows


def _inline_strips(run_dir: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strip entries of report.json with their rows as JPEG data URIs and their audio as a data URI."""
    strips = []
    for entry in entries:
        audio = run_dir / entry["audio"] if entry.get("audio") else None
        strips.append(
            {
                **entry,
                "rows": strip_rows(run_dir / entry["image"], entry["seconds"], entry["header_px"]),
                "audio_uri": data_uri(audio.read_bytes(), "audio/wav") if audio and audio.is_file() else None,
            }
        )
    return strips


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), sub)
    else:
        yield prefix, json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else value


def feature_settings(report: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """[(datasets sharing these settings, [(key, value), ...])]: the params the feature shards recorded."""
    groups: dict[str, list[str]] = {}
    for name, params in (report.get("feature_params") or {}).items():
        groups.setdefault(json.dumps(params, sort_keys=True), []).append(name)
    return [(", ".join(names), list(_flatten("", json.loads(key)))) for key, names in groups.items()]


def run_view(run_dir: Path, label: str) -> dict[str, Any]:
    """Everything the template shows of one run, images and audio already inlined."""
    report = load_run(run_dir)
    strips = _inline_strips(run_dir, report["strips"])
    negative_strips = _inline_strips(run_dir, report.get("negative_strips") or [])
    for entry in negative_strips:
        entry["condition_label"] = CONDITION_LABELS.get(entry["condition"], entry["condition"])
    train = report.get("train_params") or {}
    input_size = report.get("input_size") or _scored_size_of_old_report(report)
    return {
        "label": label,
        "input_size": input_size,
        "dir": str(run_dir),
        "report": report,
        "summary": summary_rows(report),
        "strips": strips,
        "negative": negative_audio_rows(report),
        "negative_strips": negative_strips,
        "features": feature_settings(report),
        "train": {
            k: train.get(k)
            for k in ("datasets", "max_steps", "batch_size", "lr", "size", "inference_size", "freeze_backbone")
            if k in train
        },
        "curves_svg": charts.training_curves(report.get("curves") or {}),
        "per_class_svg": charts.per_class_iou(report.get("per_class_iou") or []),
        "score_keys": _score_keys(report["task"]),
    }


def _scored_size_of_old_report(report: dict[str, Any]) -> list[int]:
    """Reports written before ``input_size`` was recorded: the size evaluate chose by its rule."""
    from train.checkpoint import scoring_size  # torch and the models: only for such old reports

    return scoring_size(report["train_params"], report["eval_params"].get("size"))


def per_video_table(views: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the sortable per-video table: one row per (dataset, video), for each run its
    two scores and the first one with shuffled audio (runs side by side when comparing)."""
    header, keyed = ["dataset", "video"], {}
    for view in views:
        first, second = view["score_keys"]
        suffix = f" ({view['label']})" if len(views) > 1 else ""
        header += [f"{first}{suffix}", f"{second}{suffix}", f"{first} shuffled{suffix}"]
    for n, view in enumerate(views):
        first, second = view["score_keys"]
        for row in view["report"]["per_video"]:
            cells = keyed.setdefault((row["dataset"], row["video_id"]), [None] * (3 * len(views)))
            cells[3 * n : 3 * n + 3] = [row.get(first), row.get(second), row.get(f"{first}_shuffled_audio")]
    return header, [[d, v, *cells] for (d, v), cells in sorted(keyed.items())]


def render_report(run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None) -> Path:
    """Write the page for ``run_dirs`` (one: a run's report; several: side by side) to ``out``."""
    import jinja2

    run_dirs = [Path(d) for d in run_dirs]
    labels = list(labels) if labels else [d.name if len(run_dirs) == 1 else str(d) for d in run_dirs]
    views = [run_view(d, label) for d, label in zip(run_dirs, labels)]
    header, rows = per_video_table(views)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("train.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v, digits=3: "" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else v)
    html = env.get_template("report.html.j2").render(
        views=views, table_header=header, table_rows=rows, compare=len(views) > 1
    )
    out = Path(out)
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
