"""What a stage costs before its real work, at AVSBench size: `avs manifest` with cold and warm caches
(hashing and one ffmpeg probe per wav), and the peak memory of `avs audio` (YAMNet) and `avs proposals`
(COMBO's maskige tree), whose processes imported torch (~0.9 GB with a CUDA build) without running it.

A 1/10 S4 release tree (benchmarks/avsbench_full.py, about 500 videos) is written once under
benchmarks/results/cache/; this checkout and a baseline revision (``--baseline``, exported with
``git archive``) run the same commands in one workspace, interleaved (order alternating per repeat),
each under ``/usr/bin/time`` (wall, user + system CPU, peak RSS of the command's largest process).
"Cold" deletes ``data/cache/`` first (the files stay in the page cache; nothing here drops it).

    python benchmarks/bench_stage_startup.py --baseline a778813          # ~5 min on the shared 2-core machine
    python benchmarks/bench_stage_startup.py --baseline a778813 --quick  # 1/50 of S4, one repeat
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import avsbench_full  # noqa: E402
from _bench_common import RESULTS_DIR, machine_info, median, print_table, write_json  # noqa: E402

SHARD = ["--dataset", "s4", "--shard", "0", "--no-progress", "--workers", "0"]
MANIFEST = ["manifest", "--dataset", "s4", "--no-progress"]


def timed_avs(code: Path, ws: Path, argv: list[str]) -> dict:
    """``python -m stages.cli ARGV`` with ``code`` first on the path, in ``ws``: wall, CPU s, peak RSS MB."""
    fmt = "%e %U %S %M"
    cmd = ["/usr/bin/time", "-f", fmt, sys.executable, "-m", "stages.cli", *argv]
    proc = subprocess.run(cmd, cwd=ws, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True)
    last = proc.stderr.decode(errors="replace").strip().splitlines()[-1].split()
    if proc.returncode != 0:
        raise RuntimeError(f"avs {' '.join(argv)} ({code}) exited {proc.returncode}: {proc.stderr[-500:]!r}")
    wall, user, system, rss_kb = (float(v) for v in last)
    return {"wall_s": wall, "cpu_s": round(user + system, 2), "peak_rss_mb": round(rss_kb / 1024, 1)}


def workspace(ws: Path, tree: Path) -> None:
    """params.yaml of this checkout pointed at the S4 tree: 4 shards, COMBO's maskiges as the proposals."""
    ws.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(datasets=["s4"], shards=[0, 1, 2, 3])
    params["manifest"]["datasets"] = {"s4": {"source": "avsbench_s4", "root": str(tree)}}
    params["proposals"].update(datasets=[], maskige_trees={"s4": str(tree)})
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def export(revision: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(codes: dict[str, Path], ws: Path, repeats: int) -> dict[str, dict[str, list[dict]]]:
    runs: dict[str, dict[str, list[dict]]] = {name: {} for name in codes}
    timed_avs(codes["current"], ws, MANIFEST)
    timed_avs(codes["current"], ws, ["extract", *SHARD])  # the audio and proposals input, made once
    for repeat in range(repeats):
        order = list(codes) if repeat % 2 == 0 else list(reversed(codes))
        for name in order:
            shutil.rmtree(ws / "data" / "cache", ignore_errors=True)
            for step in ("manifest cold", "manifest warm", "manifest warm again"):
                runs[name].setdefault(step, []).append(timed_avs(codes[name], ws, MANIFEST))
            runs[name].setdefault("audio yamnet", []).append(timed_avs(codes[name], ws, ["audio", *SHARD]))
            runs[name].setdefault("proposals maskige tree", []).append(
                timed_avs(codes[name], ws, ["proposals", *SHARD])
            )
    return runs


def summary(runs: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        name: {step: {key: median(r[key] for r in rs) for key in rs[0]} for step, rs in steps.items()}
        for name, steps in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with (e.g. main)")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1/50 of S4, one repeat")
    parser.add_argument("--raw", type=Path, help="where the trees are (or go); default benchmarks/results/cache/...")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "stage_startup.json")
    args = parser.parse_args(argv)
    fraction, repeats = (0.02, 1) if args.quick else (args.fraction, args.repeats)
    raw = args.raw or RESULTS_DIR / "cache" / f"avsbench-s4-{fraction:g}"
    generated = avsbench_full.generate(raw, ["s4"], fraction, seed=0, workers=1)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        ws = Path(tmp) / "ws"
        workspace(ws, raw / "Single-source")
        codes = {"baseline": export(args.baseline, Path(tmp) / "baseline"), "current": REPO}
        result = summary(measure(codes, ws, repeats))
    steps = list(result["current"])
    rows = [
        [
            step,
            *(
                result[name][step][key]
                for name in ("baseline", "current")
                for key in ("wall_s", "cpu_s", "peak_rss_mb")
            ),
        ]
        for step in steps
    ]
    headers = ["step", "base wall s", "base CPU s", "base RSS MB", "wall s", "CPU s", "RSS MB"]
    print_table(headers, rows, title=f"{generated['videos']['s4']} S4 videos, baseline {args.baseline}")
    write_json(
        args.out,
        {"machine": machine_info(), "baseline": args.baseline, "videos": generated["videos"], "median": result},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
