"""COMBO and TransAVS on the demo: the same cached features, one training run per configuration.

Method
------
Needs the demo's feature shards (run ``make demo`` first). Each configuration is ``params.yaml``
with some ``train`` keys changed, written to a run folder under ``data/runs/bench_demo_models/``;
``avs train --params P`` trains it and ``avs evaluate --params P`` scores the final checkpoint and
every intermediate one that is kept (``checkpoint_every`` / ``keep_checkpoints``), on the demo test
splits at the checkpoint's ``inference_size``. Reported per scored checkpoint: S4 and MS3 M_J / M_F,
S4 M_J with the audio shuffled across clips, the MS3 audio-shuffle drop (M_J minus its shuffled
M_J), and the training wall time (the machine is shared: an upper bound).

Configurations (``--only NAME`` runs one):

* ``combo``: ``combo_mnv2`` at the demo's 850 steps (what ``make demo`` trains);
* ``transavs``: ``transavs_mnv2`` at 850 steps;
* ``transavs_4x``: 3400 steps, checkpoints at 850, 1700, 2550 kept and scored (poly schedule over
  3400 steps, so the early points are not 1x / 2x runs of their own);
* ``transavs_lr3e-4``, ``transavs_lr3e-3``: the 850-step run at another learning rate;
* ``transavs_split_objects``: 850 steps, one ground-truth segment per object (docs/models.md).

About 6 minutes per 850 steps on 2 free cores; the whole set about 70 minutes.

    python benchmarks/bench_demo_models.py [--only transavs_4x]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from _bench_common import REPO_ROOT, RESULTS_DIR, machine_info, print_table, write_json

CONFIGS: dict[str, dict[str, Any]] = {
    "combo": {"model": "combo_mnv2"},
    # The TransAVS runs below were measured at COMBO's demo lr (1e-3), before transavs_mnv2's own default (3e-3).
    "transavs": {"model": "transavs_mnv2", "lr": 1e-3},
    "transavs_4x": {
        "model": "transavs_mnv2",
        "lr": 1e-3,
        "max_steps": 3400,
        "checkpoint_every": 850,
        "keep_checkpoints": 3,
    },
    "transavs_lr3e-4": {"model": "transavs_mnv2", "lr": 3e-4},
    "transavs_lr3e-3": {"model": "transavs_mnv2", "lr": 3e-3},
    "transavs_split_objects": {
        "model": "transavs_mnv2",
        "lr": 1e-3,
        "model_config": {"loss": {"split_objects": True}},
    },
}


def avs(*args: str) -> None:
    """One ``avs`` command in the repository root; its output goes to the terminal."""
    subprocess.run([sys.executable, "-m", "stages.cli", *args, "--no-progress"], cwd=REPO_ROOT, check=True)


def run_config(name: str, train_overrides: dict[str, Any], root: Path) -> dict[str, Any]:
    """Train one configuration and score its checkpoints: {"train_s", "points": [metrics per step]}."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["train"].update(train_overrides)
    params_path = folder / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    start = time.perf_counter()
    avs("train", "--params", str(params_path), "--out", str(folder / "run"), "--log", str(folder / "log"))
    train_s = time.perf_counter() - start
    checkpoints = sorted((folder / "run" / "checkpoints").glob("step-*.pt")) + [folder / "run" / "model.pt"]
    points = []
    for checkpoint in checkpoints:
        out = folder / f"eval_{checkpoint.stem}"
        avs("evaluate", "--params", str(params_path), "--checkpoint", str(checkpoint), "--out", str(out))
        points.append(summarize(json.loads((out / "metrics.json").read_text())))
    return {"train_overrides": train_overrides, "train_s": round(train_s, 1), "points": points}


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures reported per checkpoint, from an evaluation's metrics.json."""
    s4, ms3 = metrics["demo_s4"], metrics["demo_ms3"]
    return {
        "step": metrics["step"],
        "model": metrics["model"],
        "s4_mj": s4["M_J"],
        "s4_mf": s4["M_F"],
        "s4_shuffled_mj": s4["shuffled_audio"]["M_J"],
        "ms3_mj": ms3["M_J"],
        "ms3_mf": ms3["M_F"],
        "ms3_drop": ms3["audio_dependence"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CONFIGS), help="run one configuration")
    args = parser.parse_args()
    root = REPO_ROOT / "data" / "runs" / "bench_demo_models"
    names = [args.only] if args.only else list(CONFIGS)
    results = {name: run_config(name, CONFIGS[name], root) for name in names}
    rows = [
        [
            name,
            p["model"],
            p["step"],
            f"{p['s4_mj']:.3f} / {p['s4_mf']:.3f}",
            f"{p['s4_shuffled_mj']:.3f}",
            f"{p['ms3_mj']:.3f} / {p['ms3_mf']:.3f}",
            f"{p['ms3_drop']:.3f}",
            result["train_s"],
        ]
        for name, result in results.items()
        for p in result["points"]
    ]
    print_table(
        ["config", "model", "step", "S4 M_J / M_F", "S4 shuffled", "MS3 M_J / M_F", "MS3 drop", "train s"],
        rows,
        title="Demo models (test splits, scored at inference_size)",
    )
    path = RESULTS_DIR / "bench_demo_models.json"
    earlier = json.loads(path.read_text())["results"] if args.only and path.is_file() else {}
    write_json(path, {"machine": machine_info(), "results": {**earlier, **results}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
