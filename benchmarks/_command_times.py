"""How much of a ``dvc repro`` went to the ``avs`` commands it ran, and so how much to DVC itself.

:func:`avs_timed` gives an environment in which ``avs`` runs under GNU time (a shim first on ``PATH``), each
command appending ``wall command line`` to a log; :func:`command_walls` reads that log back."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def avs_timed(env: dict[str, str]) -> Iterator[tuple[dict[str, str], Path]]:
    """``env`` with an ``avs`` shim first on its ``PATH``, and the log the shim appends to (both temporary)."""
    real = shutil.which("avs", path=env.get("PATH"))
    if real is None:
        raise RuntimeError("no avs command on PATH (install the project: pip install -e .)")
    with tempfile.TemporaryDirectory(prefix="avs_timed_") as tmp:
        log, shim = Path(tmp) / "commands.txt", Path(tmp) / "avs"
        shim.write_text(f'#!/bin/sh\nexec /usr/bin/time -a -o "{log}" -f "%e %C" "{real}" "$@"\n')
        shim.chmod(0o755)
        yield {**env, "PATH": os.pathsep.join([tmp, env.get("PATH", "")])}, log


def command_walls(log_text: str) -> dict[str, float]:
    """``avs`` sub-command line (``manifest --dataset s4 --no-progress``) -> wall seconds, from the shim's log; GNU
    time's own lines (a command's non-zero exit status) are left out. A command run twice adds up."""
    walls: dict[str, float] = {}
    for line in log_text.splitlines():
        wall, _, command = line.partition(" ")
        words = command.split()
        try:
            seconds = float(wall)
        except ValueError:
            continue
        if len(words) >= 2 and os.path.basename(words[0]) == "avs":
            name = " ".join(words[1:])
            walls[name] = round(walls.get(name, 0.0) + seconds, 2)
    return walls


def split_walls(runs: list[dict]) -> dict:
    """Medians over ``runs`` (each with its ``wall_s`` and its ``commands``, the :func:`command_walls` of its log) of
    each ``avs`` command's wall and of the rest of the wall, DVC's own."""
    names = sorted({name for run in runs for name in run["commands"]})
    return {
        "commands_s": {n: round(statistics.median(run["commands"].get(n, 0.0) for run in runs), 2) for n in names},
        "dvc_s": round(statistics.median(run["wall_s"] - sum(run["commands"].values()) for run in runs), 2),
    }
