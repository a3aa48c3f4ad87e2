"""A real dask cluster for ``bench_cost_model.py``: a ``dask scheduler`` process and a ``dask worker``
process tree on loopback, started fresh per stage and mode (timed) and shut down again (timed).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bench_common import REPO_ROOT


@dataclass
class Cluster:
    """A ``dask scheduler`` process and a ``dask worker`` process tree on loopback, with a client."""

    address: str
    processes: list[subprocess.Popen]
    client: Any
    start_s: float
    log: Path


def start_cluster(workers: int, folder: Path, timeout: float = 180.0) -> Cluster:
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file, log = folder / "scheduler.json", folder / "cluster.log"
    # The benchmarks folder too: the workers unpickle the cases' warm-up functions by module (_cost_cases).
    paths = [str(REPO_ROOT), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    cli = [sys.executable, "-m"]
    start = time.perf_counter()
    with log.open("ab") as sink:
        procs = [
            subprocess.Popen(
                [
                    *cli,
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=sink,
            ),  # fmt: skip
        ]
        while not scheduler_file.is_file():
            if procs[0].poll() is not None or time.perf_counter() - start > timeout:
                _end(procs)
                raise RuntimeError(f"dask scheduler did not start; see {log}: {_tail(log)}")
            time.sleep(0.05)
        procs.append(
            subprocess.Popen(
                [
                    *cli,
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(scheduler_file),
                    "--nworkers",
                    str(workers),
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--death-timeout",
                    "60",
                    "--local-directory",
                    str(folder / "workers"),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=sink,
            )  # fmt: skip
        )
    try:
        client = Client(scheduler_file=str(scheduler_file), timeout="60s")
        client.wait_for_workers(workers, timeout=timeout)
    except Exception as error:
        _end(procs)
        raise RuntimeError(f"dask cluster of {workers} workers did not start ({error}); {_tail(log)}") from error
    return Cluster(client.scheduler.address, procs, client, time.perf_counter() - start, log)


def stop_cluster(cluster: Cluster) -> float:
    """Shut the scheduler and workers down; seconds until every process has exited."""
    start = time.perf_counter()
    with contextlib.suppress(Exception):
        cluster.client.shutdown()
    with contextlib.suppress(Exception):
        cluster.client.close()
    _end(cluster.processes)
    return time.perf_counter() - start


def _end(procs: list[subprocess.Popen], grace: float = 30.0) -> None:
    """Wait for this benchmark's own cluster processes; terminate (then kill) any still running."""
    deadline = time.perf_counter() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""
