"""A local dask cluster listens on loopback only (probe: every run exposed a dashboard on 0.0.0.0:8787)."""

from __future__ import annotations

import os

import psutil

from pipeline.parallel import dask_client
from pipeline.params import DaskParams


def _listening_addresses() -> set[str]:
    me = psutil.Process(os.getpid())
    return {conn.laddr.ip for conn in me.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN}


def test_local_cluster_listens_on_loopback_only():
    before = _listening_addresses()
    with dask_client(DaskParams(n_workers=1)) as client:
        assert client.submit(lambda x: x + 1, 1).result() == 2
        opened = _listening_addresses() - before
    assert opened and opened <= {"127.0.0.1", "::1"}, opened
