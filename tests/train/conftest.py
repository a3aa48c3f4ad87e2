"""Fixtures shared by the model tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """The machine is shared: one intra-op thread avoids oversubscription (20x slower otherwise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
