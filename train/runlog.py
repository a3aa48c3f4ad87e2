"""What a long run tells the person watching it and what it records for DVC.

- :class:`ProgressLine`: a compact line every N steps or S seconds (done/total, rate, ETA and any
  numbers the caller adds), printed when no progress bar is shown, e.g. under ``dvc repro``, whose
  stages all run with ``--no-progress``. A log then shows a run is alive and when it will end.
- :func:`track`: a loop over an iterable that shows a tqdm bar, or progress lines without one.
- :class:`TrainLogger`: the training record, written with DVC's logger (dvclive): one TSV per
  curve under ``DIR/plots/metrics`` (``dvc plots show``) and the last values in
  ``DIR/metrics.json`` (``dvc exp show``), plus the bar or the progress lines.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLine:
    """Prints ``desc: done/total (pct) | extras | rate | elapsed | ETA`` at most every ``every_s``
    seconds or every ``every_n`` items, whichever comes first, and always for the last item."""

    def __init__(
        self,
        desc: str,
        total: int,
        unit: str,
        *,
        initial: int = 0,
        every_n: int | None = None,
        every_s: float = 30.0,
        stream: TextIO | None = None,
    ) -> None:
        self.desc, self.total, self.unit, self.done = desc, total, unit, initial
        self.every_n, self.every_s = every_n, every_s
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.start_done = initial

    def update(self, n: int = 1, **extras: Any) -> None:
        self.done += n
        now = time.monotonic()
        due = (
            now - self.last >= self.every_s
            or self.done >= self.total
            or (self.every_n is not None and self.done % self.every_n == 0)
        )
        if due:
            self.last = now
            self.stream.write(self.format(now - self.start, extras) + "\n")
            self.stream.flush()

    def format(self, elapsed: float, extras: dict[str, Any]) -> str:
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * self.done / max(self.total, 1):.0f}%)"]
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in extras.items()]
        parts += [
            f"{rate:.2f} {self.unit}/s" if math.isfinite(rate) else f"? {self.unit}/s",
            f"elapsed {_duration(elapsed)}",
            f"ETA {_duration(eta)}",
        ]
        return " | ".join(parts)


def track(
    items: Iterable[T], total: int, desc: str, *, bar: bool, unit: str = "video", every_s: float = 30.0
) -> Iterator[T]:
    """Iterate ``items`` with a tqdm bar when ``bar``, else with :class:`ProgressLine` lines."""
    if bar:
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True)
        return
    line = ProgressLine(desc, total, unit, every_s=every_s)
    for item in items:
        yield item
        line.update()


class TrainLogger:
    """Per-step record of a training run (dvclive) and what the console shows (bar or lines).

    ``log_dir``: the dvclive folder. ``resume_step`` > 0 continues an earlier record: rows after
    that step (logged by the interrupted run after its last checkpoint) are dropped, so a resumed
    run's curves equal an uninterrupted run's. ``enabled`` False (non-main DDP ranks): silent."""

    def __init__(
        self,
        log_dir: Path,
        desc: str,
        max_steps: int,
        resume_step: int = 0,
        *,
        bar: bool = True,
        enabled: bool = True,
        every_n: int = 50,
        every_s: float = 60.0,
    ) -> None:
        self.enabled, self.live, self.bar, self.line = enabled, None, None, None
        if not enabled:
            return
        from dvclive import Live

        if resume_step > 0:
            _truncate_metrics(Path(log_dir) / "plots" / "metrics", resume_step)
        # dvcyaml=None: dvc.yaml declares the plots itself; save_dvc_exp=False: `dvc exp run` makes
        # experiments, a plain run must not create one behind the user's back.
        self.live = Live(dir=str(log_dir), resume=resume_step > 0, dvcyaml=None, save_dvc_exp=False)
        if bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=max_steps, initial=resume_step, desc=desc, unit="step", dynamic_ncols=True)
        else:
            self.line = ProgressLine(desc, max_steps, "step", initial=resume_step, every_n=every_n, every_s=every_s)

    def log_params(self, params: dict[str, Any]) -> None:
        if self.live is not None:
            self.live.log_params(params)

    def step(self, step: int, values: dict[str, float]) -> None:
        """Record the scalars of ``step`` (after it ran): ``loss_*``, ``lr``, ``grad_norm``, ...;
        the bar or progress line shows ``loss_total``."""
        if not self.enabled:
            return
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(f"train/{name}", value)
        self.live.make_summary()
        loss = values.get("loss_total", float("nan"))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}")
        else:
            self.line.update(1, loss=loss, lr=values.get("lr", float("nan")))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.live is not None:
            self.live.end()


def _truncate_metrics(folder: Path, last_step: int) -> None:
    """Drop rows with step > ``last_step`` from every dvclive metric TSV under ``folder``."""
    from pipeline.atomic import atomic_path

    for tsv in folder.rglob("*.tsv"):
        with open(tsv, newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if not rows:
            continue
        step_col = rows[0].index("step") if "step" in rows[0] else None
        keep = [rows[0]] + [r for r in rows[1:] if step_col is None or int(r[step_col]) <= last_step]
        with atomic_path(tsv) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(keep)


def read_curves(log_dir: Path, max_points: int = 1000, last_step: int | None = None) -> dict[str, list[list[float]]]:
    """The curves of a dvclive folder: {metric name (path under plots/metrics, no suffix): [[step, value], ...]},
    up to ``last_step`` (the evaluated checkpoint's: a run evaluated mid-way shows its curves so far),
    thinned to at most ``max_points`` points each (every k-th point, the last one kept)."""
    curves: dict[str, list[list[float]]] = {}
    folder = Path(log_dir) / "plots" / "metrics"
    for tsv in sorted(folder.rglob("*.tsv")):
        with open(tsv, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        name = tsv.relative_to(folder).with_suffix("").as_posix()
        value_key = Path(name).name
        points = [
            [float(r["step"]), float(r[value_key])]
            for r in rows
            if r.get(value_key) not in (None, "") and (last_step is None or int(r["step"]) <= last_step)
        ]
        k = max(1, math.ceil(len(points) / max_points))
        thinned = points[::k]
        if points and thinned[-1] != points[-1]:
            thinned.append(points[-1])
        curves[name] = thinned
    return curves
