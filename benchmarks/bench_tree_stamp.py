"""What the source-tree stamp costs, and what it saves ``dvc status`` (docs/pipeline.md, "Source-tree stamps").

For each ``--tree``: files and bytes, the stamp walk (``pipeline.tree_stamp.stamp_tree``: wall and CPU
seconds, median of ``--repeats`` warm runs, files/s, us per file) against the floor of any walk (``os.walk`` +
one ``os.stat`` per file). With ``--dvc``, also ``dvc status`` in a scratch DVC project holding a hard-linked
copy of the tree, whose one stage depends either on the tree (DVC stats every file and looks each up in its
state database) or on the stamp (written by an always-changed stage, as in dvc.yaml).

    python benchmarks/bench_tree_stamp.py --tree data/raw/demo/Single-source --tree data/raw/full/Single-source --dvc
"""

from __future__ import annotations

import argparse
import os
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

from pipeline.tree_stamp import stamp_tree  # noqa: E402


def _walk_and_stat(root: str) -> int:
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(folder, name))
            count += 1
    return count


def _timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_walks(tree: str, repeats: int) -> dict:
    stamp = stamp_tree(tree)  # warm-up: the inodes in the kernel's cache, as on a second `dvc repro`
    runs = {"stamp": [], "walk_stat": []}
    for i in range(repeats):  # interleaved, order alternating
        order = (("stamp", stamp_tree), ("walk_stat", _walk_and_stat))
        for name, fn in order if i % 2 == 0 else reversed(order):
            runs[name].append(_timed(fn, tree))
    result = {"tree": tree, "files": stamp.files, "bytes": stamp.bytes}
    for name, timings in runs.items():
        wall, cpu = median(t[0] for t in timings), median(t[1] for t in timings)
        result[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "files_per_s": stamp.files / wall,
            "us_per_file": 1e6 * wall / stamp.files,
        }
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _dvc(project: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``dvc`` command (CPU: what the machine's load does not inflate)."""
    wall, cpu = time.perf_counter(), _children_cpu()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, check=True, capture_output=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def _project(base: Path, tree: str, dep: str) -> Path:
    """A scratch DVC project with a hard-linked copy of ``tree`` and one stage depending on the tree or its stamp."""
    project = base / dep
    project.mkdir()
    shutil.copytree(tree, project / "tree", copy_function=os.link)
    stamp = f"{sys.executable} -m stages.cli tree-stamp --tree tree --out stamp.json"
    stages = {"use": {"cmd": "echo used", "deps": ["tree" if dep == "tree" else "stamp.json"]}}
    if dep == "stamp":
        stages["stamp"] = {"cmd": stamp, "always_changed": True, "outs": [{"stamp.json": {"persist": True}}]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    _dvc(project, "init", "--no-scm", "-q")
    _dvc(project, "repro", "-q")
    return project


def measure_dvc_status(tree: str, repeats: int) -> dict:
    os.environ["PYTHONPATH"] = str(REPO_ROOT)  # the stamp stage runs this checkout
    with tempfile.TemporaryDirectory(prefix="bench_tree_stamp_") as scratch:
        projects = {dep: _project(Path(scratch), tree, dep) for dep in ("tree", "stamp")}
        timings = {dep: [] for dep in projects}
        for i in range(repeats):
            for dep in projects if i % 2 == 0 else reversed(list(projects)):
                timings[dep].append(_dvc(projects[dep], "status"))  # -q would exit 1: "always changed"
    result = {f"dvc_status_{dep}_dep_s": median(t[0] for t in values) for dep, values in timings.items()}
    return result | {f"dvc_status_{dep}_dep_cpu_s": median(t[1] for t in values) for dep, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="a folder to stamp (repeatable)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dvc", action="store_true", help="also time `dvc status` with the tree vs the stamp as dep")
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_tree_stamp.json")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    results = []
    for tree in args.tree:
        result = measure_walks(tree, repeats)
        if args.dvc:
            result |= measure_dvc_status(tree, max(2, repeats // 2))
        results.append(result)
    rows = [
        [r["tree"], r["files"], r["stamp"]["wall_s"], r["stamp"]["cpu_s"], round(r["stamp"]["files_per_s"]),
         r["stamp"]["us_per_file"], r["walk_stat"]["us_per_file"], r.get("dvc_status_tree_dep_s", "-"),
         r.get("dvc_status_stamp_dep_s", "-"), r.get("dvc_status_tree_dep_cpu_s", "-"),
         r.get("dvc_status_stamp_dep_cpu_s", "-")]
        for r in results
    ]  # fmt: skip
    headers = ["tree", "files", "stamp s", "stamp CPU s", "files/s", "us/file", "walk+stat us/file"]
    print_table(
        headers + ["dvc status: tree dep s", "stamp dep s", "tree dep CPU s", "stamp dep CPU s"],
        rows,
        "tree stamp walk",
    )
    write_json(args.out, {"machine": machine_info(), "repeats": repeats, "results": results})


if __name__ == "__main__":
    main()
