"""pipeline.parallel: a map of one item on a local cluster of threads runs in this process, without starting
the cluster (~0.45 s, as much as a whole rerun that computes the one video a user added)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.parallel import runs_in_process
from pipeline.params import DaskParams

PROBE = """
import sys
from pipeline.parallel import map_ordered
from pipeline.params import DaskParams
values = [o.value for _, o in map_ordered(abs, {items}, dask_cfg=DaskParams(), progress=False)]
print(values, "distributed" in sys.modules)
"""


@pytest.mark.parametrize(("items", "cluster"), [([-3], False), ([-3, 4], True)])
def test_one_item_skips_the_local_cluster(items, cluster):
    done = subprocess.run([sys.executable, "-c", PROBE.format(items=items)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("]")[-1].strip() == str(cluster)
    assert done.stdout.startswith(str([abs(i) for i in items]))


@pytest.mark.parametrize(
    ("cfg", "total", "expected"),
    [
        (DaskParams(), 1, True),
        (DaskParams(), 0, True),
        (DaskParams(), 2, False),
        (DaskParams(n_workers=0), 50, True),
        (DaskParams(processes=True), 1, False),  # worker processes: a native crash stays in the worker
        (DaskParams(scheduler_address="tcp://127.0.0.1:8786"), 1, False),  # the user's cluster does the work
    ],
)
def test_which_maps_run_in_process(cfg, total, expected):
    assert runs_in_process(cfg, total) is expected
