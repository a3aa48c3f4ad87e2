"""The evaluation's scalars through dvclive: ``metrics.json``, what ``dvc metrics show`` and
``dvc exp show`` read (per dataset: M_J / M_F or mIoU / F, the shuffled-audio scores and drop, and
the negative-audio measures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def log_metrics(out_dir: Path, metrics: dict[str, Any]) -> None:
    """Write ``out_dir/metrics.json`` with dvclive (its summary: nested per dataset and condition)."""
    from dvclive import Live

    live = Live(dir=str(out_dir), dvcyaml=None, save_dvc_exp=False)
    live.summary.update(metrics)
    live.end()
