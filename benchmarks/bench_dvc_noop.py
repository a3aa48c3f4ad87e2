"""``dvc repro`` / ``dvc status`` no-op time on the demo DAG, and what that time is made of.

Method
------
A temporary copy of the repository is made with only what the DAG needs: its pipeline files, params.yaml,
.dvc/config (plus ``core.no_scm = true``, since the copy is not a git work tree), .dvcignore,
pipeline/ and stages/. Its params.yaml is overridden to a small demo: ``avs demo-data`` with
1-3 videos per flavour at 64x64 (``demo.*_videos``, ``demo.frame_size``), ``extract.frame_size``
64x64 and ``dask.n_workers: 0`` (in-process, so the first run does not start six clusters).
The DAG itself (demo_data -> 3 manifest items -> 3 datasets x 2 shards extract items = 10 stage
items) is unchanged. The ``avs`` of the venv runs the stages (it imports the code of the working
tree it was installed from; the copy's files are what DVC hashes).

1. ``dvc repro`` once, untimed (builds everything).
2. ``dvc repro`` and ``dvc status`` no-ops, interleaved, ``--repeats`` times each (wall clock of the
   whole command, as a user sees it); each no-op must report that nothing changed.
3. What dominates: the bare interpreter (``python -c pass``), ``import dvc.cli``, ``dvc --version``,
   ``python -X importtime -c "import dvc.cli"`` (heaviest top-level packages, cumulative), and a
   cProfile of ``python -m dvc status`` (top functions by cumulative time).
4. Options that might reduce it, each timed side by side with the default: a single target
   (``dvc status extract@...``, ``dvc repro -s``), fewer stage items (a second copy with
   ``data.shards: [0]``: 7 items instead of 10), ``dvc repro --no-run-cache``,
   ``DVC_NO_ANALYTICS=1`` (analytics are already off in .dvc/config), and ``core.analytics true``
   (to show what the shipped setting saves).

Wall clock and CPU seconds (user + system of the command's whole process tree, from
``getrusage(RUSAGE_CHILDREN)``) are both reported: on the shared 2-core machine the wall clock is
mostly waiting for a core, the CPU time is what the command itself costs.

    python benchmarks/bench_dvc_noop.py            # 5 repeats of each command
    python benchmarks/bench_dvc_noop.py --quick    # 2 repeats, no profile
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import REPO_ROOT, RESULTS_DIR, machine_info, median, print_table, write_json  # noqa: E402

GOAL_S = 1.2
VENV_BIN = Path(sys.executable).parent


def make_copy(tmp: Path, shards: list[int] | None = None, name: str = "repo") -> Path:
    repo = tmp / name
    repo.mkdir()
    pipeline_files = [str(path.relative_to(REPO_ROOT)) for path in REPO_ROOT.glob("features/*/dvc.yaml")]
    for name in ("dvc.yaml", "stamps/dvc.yaml", *pipeline_files, "params.yaml", ".dvcignore"):
        if (REPO_ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    (repo / ".dvc").mkdir()
    config = (REPO_ROOT / ".dvc" / "config").read_text() if (REPO_ROOT / ".dvc" / "config").is_file() else "[core]\n"
    if "no_scm" not in config:
        config = config.replace("[core]\n", "[core]\n    no_scm = true\n", 1)
    (repo / ".dvc" / "config").write_text(config)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("pipeline", "stages"):
        shutil.copytree(REPO_ROOT / folder, repo / folder, ignore=ignore)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.setdefault("demo", {}).update(
        {"frame_size": [64, 64], "s4_videos": [1, 1, 1], "ms3_videos": [1, 0, 1], "avss_videos": [1, 0, 1]}
    )
    params.setdefault("extract", {})["frame_size"] = [64, 64]
    params.setdefault("dask", {})["n_workers"] = 0
    if shards is not None:
        params["data"]["shards"] = shards
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("PYTHONPATH", None)
    e.update(extra or {})
    return e


CPU_SECONDS: list[float] = []  # CPU (user + system) of the last run() call's process tree, appended per call


def run(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None, check: bool = True) -> tuple[float, str]:
    """Run ``cmd``; return its wall seconds and output. Its CPU seconds are appended to CPU_SECONDS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env(extra_env), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout + proc.stderr


def is_noop(output: str) -> bool:
    """Nothing ran but the always-changed tree stamps (stamps/dvc.yaml), which every ``dvc repro`` runs."""
    ran = [line for line in output.splitlines() if line.lower().startswith("running stage")]
    return all("'stamps/dvc.yaml:" in line for line in ran)


def importtime_top(repo: Path, n: int = 12) -> list[dict]:
    """Heaviest imports of ``import dvc.cli`` (cumulative microseconds), top-level packages and direct children."""
    _, out = run([sys.executable, "-X", "importtime", "-c", "import dvc.cli"], repo)
    rows = []
    for line in out.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append(
                {
                    "self_us": int(m.group(1)),
                    "cumulative_us": int(m.group(2)),
                    "depth": (len(m.group(3)) - 1) // 2,
                    "module": m.group(4),
                }
            )
    total = max((r["cumulative_us"] for r in rows if r["depth"] == 0), default=0)
    top = sorted(
        (r for r in rows if r["depth"] <= 1 and "." not in r["module"] or r["module"] == "dvc.cli"),
        key=lambda r: -r["cumulative_us"],
    )
    seen, out_rows = set(), []
    for r in top:
        if r["module"] in seen:
            continue
        seen.add(r["module"])
        out_rows.append(r)
        if len(out_rows) >= n:
            break
    return [{"total_import_dvc_cli_s": total / 1e6}] + out_rows


def profile_status(repo: Path, n: int = 15) -> list[dict]:
    prof = repo.parent / "status.prof"
    run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "dvc", "status"], repo)
    import pstats

    stats = pstats.Stats(str(prof))
    entries = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append(
            {
                "function": f"{Path(filename).parent.name}/{Path(filename).name}:{line}({func})",
                "cumulative_s": ct,
                "self_s": tt,
                "calls": nc,
            }
        )
    entries.sort(key=lambda e: -e["cumulative_s"])
    return entries[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_dvc_noop.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, no profiling or option study")
    parser.add_argument("--repeats", type=int, help="timed no-op runs per command (default 5, quick 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository copy (prints its path)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    dvc = str(VENV_BIN / "dvc")

    tmp = Path(tempfile.mkdtemp(prefix="avs-bench-dvc-"))
    try:
        repo = make_copy(tmp)
        first, out = run([dvc, "repro"], repo)
        print(f"first dvc repro (untimed in the table): {first:.1f} s", flush=True)
        names_listed = [
            ln.strip()
            for ln in run([dvc, "stage", "list", "--all", "--name-only"], repo)[1].splitlines()
            if re.match(r"^[\w@./:-]+$", ln.strip())
        ]
        stage_items = len(names_listed)
        single = next(n for n in names_listed if n.startswith("extract"))

        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "dvc repro": ([dvc, "repro"], None),
            "dvc status": ([dvc, "status"], None),
        }
        if not args.quick:
            commands.update(
                {
                    "python -c pass": ([sys.executable, "-c", "pass"], None),
                    "python -c 'import dvc.cli'": ([sys.executable, "-c", "import dvc.cli"], None),
                    "dvc --version": ([dvc, "--version"], None),
                    f"dvc status {single}": ([dvc, "status", single], None),
                    f"dvc repro {single}": ([dvc, "repro", single], None),
                    f"dvc repro -s {single}": ([dvc, "repro", "-s", single], None),
                    "dvc repro --no-run-cache": ([dvc, "repro", "--no-run-cache"], None),
                    "dvc repro (DVC_NO_ANALYTICS=1)": ([dvc, "repro"], {"DVC_NO_ANALYTICS": "1"}),
                    "dvc status -q": ([dvc, "status", "-q"], None),
                }
            )
        small = repo
        if not args.quick:
            # Fewer stage items: the same DAG with one shard per dataset (7 stage items instead of 10).
            small = make_copy(tmp, shards=[0], name="repo_one_shard")
            run([dvc, "repro"], small)
            commands.update(
                {
                    "dvc repro (1 shard: 7 items)": ([dvc, "repro"], None),
                    "dvc status (1 shard: 7 items)": ([dvc, "status"], None),
                }
            )
        where = {name: (small if "1 shard" in name else repo) for name in commands}
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        noop_ok: dict[str, bool] = {name: True for name in commands}
        names = list(commands)
        for rep in range(repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                cmd, extra = commands[name]
                elapsed, output = run(cmd, where[name], extra, check=not name.startswith("dvc status -q"))
                times[name].append(elapsed)
                cpu[name].append(CPU_SECONDS[-1])
                if name.startswith("dvc repro") and not is_noop(output):
                    noop_ok[name] = False
                if name == "dvc status" and "changed" in output.lower().replace("always changed", ""):
                    noop_ok[name] = False
            print(f"repeat {rep + 1}/{repeats} done", flush=True)

        analytics_on: list[float] = []
        analytics_on_cpu: list[float] = []
        if not args.quick:
            # What the shipped `core.analytics = false` saves: the same no-op with analytics on (local config only).
            run([dvc, "config", "--local", "core.analytics", "true"], repo)
            for _ in range(repeats):
                analytics_on.append(run([dvc, "repro"], repo, {"DVC_TEST": ""})[0])
                analytics_on_cpu.append(CPU_SECONDS[-1])
            run([dvc, "config", "--local", "--unset", "core.analytics"], repo)
        imports = importtime_top(repo) if not args.quick else []
        profile = profile_status(repo) if not args.quick else []
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for name in commands:
        m = median(times[name])
        rows.append(
            [
                name,
                m,
                min(times[name]),
                max(times[name]),
                median(cpu[name]),
                ("yes" if noop_ok[name] else "NO") if name.startswith(("dvc repro", "dvc status")) else "-",
            ]
        )
    if analytics_on:
        rows.append(
            [
                "dvc repro (core.analytics true)",
                median(analytics_on),
                min(analytics_on),
                max(analytics_on),
                median(analytics_on_cpu),
                "-",
            ]
        )
    table = print_table(
        ["command", "median s", "min s", "max s", "median CPU s", "no-op"],
        rows,
        title=f"No-op DVC on the demo DAG ({stage_items} stage items), {repeats} interleaved runs, "
        f"wall clock (CPU = user+system of the command's processes); goal <= {GOAL_S} s",
    )
    repro_med, status_med = median(times["dvc repro"]), median(times["dvc status"])
    summary = (
        f"dvc repro no-op median {repro_med:.2f} s (CPU {median(cpu['dvc repro']):.2f} s), dvc status "
        f"{status_med:.2f} s (CPU {median(cpu['dvc status']):.2f} s): goal <= {GOAL_S} s "
        f"{'met' if max(repro_med, status_med) <= GOAL_S else 'NOT met'}"
    )
    print(summary)
    table += "\n" + summary
    if imports:
        print()
        table += "\n\n" + print_table(
            ["module (import dvc.cli)", "cumulative s", "self s"],
            [[r["module"], r["cumulative_us"] / 1e6, r["self_us"] / 1e6] for r in imports[1:]],
            title=f"python -X importtime -c 'import dvc.cli': total {imports[0]['total_import_dvc_cli_s']:.2f} s "
            f"(heaviest top-level imports, cumulative)",
        )
    if profile:
        print()
        table += "\n\n" + print_table(
            ["function (cProfile of python -m dvc status)", "cumulative s", "self s", "calls"],
            [[e["function"][-70:], e["cumulative_s"], e["self_s"], e["calls"]] for e in profile],
            title="Top functions by cumulative time",
        )
    write_json(
        args.out,
        {
            "benchmark": "bench_dvc_noop",
            "quick": args.quick,
            "repeats": repeats,
            "machine": machine_info(),
            "first_repro_s": first,
            "stage_items": stage_items,
            "times_s": times,
            "cpu_s": cpu,
            "analytics_on_repro_cpu_s": analytics_on_cpu,
            "median_repro_cpu_s": median(cpu["dvc repro"]),
            "median_status_cpu_s": median(cpu["dvc status"]),
            "noop_verified": noop_ok,
            "analytics_on_repro_s": analytics_on,
            "median_repro_s": repro_med,
            "median_status_s": status_med,
            "goal_s": GOAL_S,
            "importtime": imports,
            "profile_status": profile,
            "table": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
