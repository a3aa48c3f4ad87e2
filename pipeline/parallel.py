"""Run a function over many videos with dask.distributed, streaming results back in order.

A local cluster sized to the machine by default (one single-threaded worker process per core);
``dask.scheduler_address`` connects to an existing cluster instead; ``dask.n_workers: 0`` runs
in-process (tests, debugging). A local cluster's scratch space lives in a folder this run owns
(``$TMPDIR/avs-dask-*``), removed at exit; one left by a killed run is removed by the next. Results come back in input order through a bounded window of
in-flight tasks, so the caller can write them to a shard as they arrive and memory stays flat
however long the manifest is. An exception in one item becomes an :class:`Outcome` with an error
message; it never aborts the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.atomic import lock_is_free
from pipeline.params import DaskParams

if TYPE_CHECKING:
    from tqdm.auto import tqdm

T = TypeVar("T")


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Guarded:
    """Picklable wrapper that turns an exception on the worker into an Outcome with a message."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, item: Any) -> Outcome:
        try:
            return Outcome(value=self.fn(item))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, (RuntimeError, ValueError, OSError)):
                # Unexpected kinds get their type and last frame so the bug can be found.
                last = traceback.extract_tb(exc.__traceback__)[-1]
                message = f"{type(exc).__name__}: {message} (at {last.filename}:{last.lineno})"
            return Outcome(error=message)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


LOOPBACK_ANY_PORT = "127.0.0.1:0"
SCRATCH_PREFIX = "avs-dask-"
SCRATCH_LOCK = ".avs-run.lock"
UNLOCKED_SCRATCH_AFTER_S = 60.0  # a scratch folder without lock younger than this may be a run just starting


def _scratch_is_abandoned(folder: Path) -> bool:
    """True when no live run holds the lock of scratch folder ``folder`` (the kernel drops a dead run's lock)."""
    free = lock_is_free(folder / SCRATCH_LOCK)
    if free is not None:
        return free
    try:
        return time.time() - folder.stat().st_mtime > UNLOCKED_SCRATCH_AFTER_S
    except OSError:
        return False


def remove_abandoned_scratch(parent: str | Path | None = None) -> list[Path]:
    """Delete the ``avs-dask-*`` scratch folders of runs that died (killed before their cleanup)."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for folder in parent.glob(f"{SCRATCH_PREFIX}*"):
        if folder.is_dir() and not folder.is_symlink() and _scratch_is_abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def run_scratch_folder() -> Iterator[Path]:
    """A folder under ``$TMPDIR`` that this run owns (flock held while it lives) for the local cluster's
    ``dask-scratch-space``, removed at exit: dask would otherwise leave its folders in ``$TMPDIR``."""
    remove_abandoned_scratch()
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    fd = os.open(folder / SCRATCH_LOCK, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


@contextlib.contextmanager
def dask_client(cfg: DaskParams) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (or None for in-process execution)."""
    if cfg.scheduler_address is None and cfg.n_workers == 0:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    if cfg.scheduler_address:
        with Client(cfg.scheduler_address, timeout="30s") as client:
            yield client
        return
    n_workers = cfg.n_workers or available_cores()
    if not cfg.processes:
        # One in-process worker with a thread per core: no start-up cost, models shared by the threads.
        # Right when the work releases the GIL (ffmpeg subprocesses, onnxruntime, torch, h5py I/O).
        n_workers, threads = 1, n_workers * cfg.threads_per_worker
    else:
        threads = cfg.threads_per_worker
    # Dashboards on loopback, on free ports: a local cluster never listens on the network (nor on a
    # fixed port that two runs on one host would fight over).
    with (
        run_scratch_folder() as scratch,
        dask.config.set({"temporary-directory": str(scratch)}),  # scheduler, nannies and workers
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            processes=cfg.processes,
            dashboard_address=LOOPBACK_ANY_PORT,
            worker_dashboard_address=LOOPBACK_ANY_PORT,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _window(cfg: DaskParams, client: Any) -> int:
    if cfg.max_in_flight:
        return cfg.max_in_flight
    workers = client.scheduler_info().get("workers", {})
    slots = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    return 2 * slots


def runs_in_process(cfg: DaskParams, total: int) -> bool:
    """Whether a map of ``total`` items skips the local cluster: always with ``n_workers: 0``, and for a single
    item on a cluster of threads (``processes: false``), whose one worker would run it in this process anyway.
    Starting that cluster costs ~0.45 s, as much as the rest of a rerun that computes the one video a user
    added. A scheduler address, or worker processes (a crash in native code stays in the worker), keep the
    cluster for any number of items."""
    if cfg.scheduler_address is not None:
        return False
    return cfg.n_workers == 0 or (total <= 1 and not cfg.processes)


def map_ordered(
    fn: Callable[[T], Any],
    items: Iterable[T],
    *,
    dask_cfg: DaskParams,
    desc: str = "videos",
    total: int | None = None,
    progress: bool = True,
    client: Any = None,
) -> Iterator[tuple[T, Outcome]]:
    """Yield ``(item, Outcome)`` for every item, in input order, computing ``fn(item)`` on dask workers (in this
    process where :func:`runs_in_process` says so).

    ``client`` lets a caller reuse one cluster across several maps; otherwise one is made for this map.
    """
    items = list(items) if total is None else items
    total = len(items) if total is None else total  # type: ignore[arg-type]
    from tqdm.auto import tqdm  # here, not at the top: it brings asyncio (~40 ms) to every stage importing this

    guarded = _Guarded(fn)
    bar = tqdm(total=total, desc=desc, unit="video", disable=not progress, dynamic_ncols=True)
    try:
        if client is None and runs_in_process(dask_cfg, total):
            yield from _run(guarded, items, dask_cfg, None, bar)
        elif client is None:
            with dask_client(dask_cfg) as own:
                yield from _run(guarded, items, dask_cfg, own, bar)
        else:
            yield from _run(guarded, items, dask_cfg, client, bar)
    finally:
        bar.close()


def _run(
    guarded: _Guarded, items: Iterable[Any], cfg: DaskParams, client: Any, bar: tqdm
) -> Iterator[tuple[Any, Outcome]]:
    if client is None:
        for item in items:
            outcome = guarded(item)
            bar.update(1)
            yield item, outcome
        return
    window = _window(cfg, client)
    pending: deque = deque()
    iterator = iter(items)

    def submit_next() -> None:
        for item in iterator:
            pending.append((item, client.submit(guarded, item, pure=False)))
            return

    for _ in range(window):
        submit_next()
    while pending:
        item, future = pending.popleft()
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker died or the task could not be shipped
            outcome = Outcome(error=f"worker failure: {type(exc).__name__}: {exc}")
        future.release()
        submit_next()
        bar.update(1)
        yield item, outcome
