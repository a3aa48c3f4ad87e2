"""The two tables ``bench_scale.py`` prints from its results: per-stage costs at each fraction, and what a user
runs (no-op, adding a video, editing a label, the loader, evaluate) with the ratio of each no-op to the demo's."""

from __future__ import annotations

from _bench_common import print_table


def _get(point: dict, *keys: str) -> object:
    """A nested entry of a point, or "-" where a step was skipped (or predates this table)."""
    value: object = point
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return "-"
        value = value[key]
    return value


def _noop(point: dict, demo: dict | None, key: str) -> str:
    """A no-op figure with its ratio to the demo's (the demo's runs interleaved with the point's when there are).
    Points measured before this layout kept them at the top level, timed with the 24 item targets (marked *, no
    ratio: not what a user runs)."""
    if "noop" not in point:
        return f"{point[key]}*" if key in point else "-"
    value = point["noop"][key]
    demo = point["noop"].get("demo", demo)  # measured beside this point's no-op, else the run's demo baseline
    return f"{value} ({value / demo[key]:.1f}x)" if demo and demo.get(key) else f"{value}"


def _change(point: dict, name: str) -> str:
    wall, share = _get(point, name, "wall_s"), _get(point, name, "share_of_features")
    if wall == "-":
        return "-"
    marginal = _get(point, name, "marginal_share_of_features")
    text = f"{wall} s ({share:.1%}"
    return text + (f"; marginal {marginal:.1%})" if marginal != "-" else ")")


def _loader(point: dict) -> str:
    rates = [_get(point, "loader", f"{w}_workers", "clips_per_s") for w in (0, 1, 2)]
    return "-" if rates[0] == "-" else " / ".join(str(r) for r in rates)


def _evaluate(point: dict) -> str:
    wall = _get(point, "evaluate", "wall_s")
    return "-" if wall == "-" else f"{wall} s, {_get(point, 'evaluate', 'peak_rss_mb')} MB"


def print_tables(results: dict) -> None:
    points = sorted(results["points"].items(), key=lambda kv: (kv[1]["fraction"], kv[0]))
    rows = [
        [f, st, s["items"], s["wall_s_per_video"], s["cpu_s_per_video"], s["peak_rss_mb"],
         "-" if s["output_bytes_per_video"] is None else s["output_bytes_per_video"]]
        for f, p in points for st, s in p["stages"].items()
    ]  # fmt: skip
    print_table(["fraction", "stage", "items", "wall s/video", "cpu s/video", "peak RSS MB", "bytes/video"], rows)
    demo = results.get("demo_baseline")
    rows = [
        [f, _noop(p, demo, "dvc_status_s"), _noop(p, demo, "dvc_repro_noop_s"), _change(p, "add_one_video"),
         _get(p, "edit_one_label", "wall_s"), _loader(p), _evaluate(p),
         _get(p, "max_steps_1_repro", "until_train_starts_s")]
        for f, p in points
    ]  # fmt: skip
    headers = ["fraction", "dvc status s (x demo)", "no-op repro s (x demo)", "add one video (share; marginal)",
               "edit label s", "loader clips/s 0/1/2", "evaluate, peak RSS", "train starts s"]  # fmt: skip
    when = f", demo measured {demo['measured_at']}" if demo else ", no demo baseline"
    print_table(headers, rows, title=f"What a user runs{when}")
    if any("noop" not in p for _, p in points):
        print("* measured before this layout: dvc status / repro given the feature item targets, not plain")
    for f, p in points:
        for step in ("noop", "add_one_video", "edit_one_label"):
            if step in p and "always_changed_ran" in p[step]:
                print(f"{f} {step}: reran {p[step]['reran'] or 'nothing'}; stamps {p[step]['always_changed_ran']}")
