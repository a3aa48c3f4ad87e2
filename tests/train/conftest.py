"""Fixtures shared by the training tests: toy feature shards written with the real shard API and
feature records, and small training params."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.toy_shards import ToyClip, default_records, write_clip_shards
from train.loop import TrainParams

SIZE = 32  # frame size of the toy shards


@pytest.fixture
def single_thread():
    """The machine is shared: one intra-op thread avoids oversubscription (20x slower otherwise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_toy_shards(root: Path, dataset: str = "toy", videos: int = 6, T: int = 3, dim: int = 16) -> None:
    """A square whose position is announced by the audio: the sounding square is the ground truth."""
    rng = np.random.default_rng(0)
    clips = []
    for v in range(videos):
        frames = np.full((T, SIZE, SIZE, 3), 40, np.uint8)
        masks = np.zeros((T, SIZE, SIZE), np.uint8)
        audio = np.zeros((T, dim), np.float32)
        for t in range(T):
            left = (v + t) % 2 == 0
            frames[t, 8:20, 2:14] = (200, 30, 30)
            frames[t, 8:20, 18:30] = (30, 30, 200)
            first, last = (2, 14) if left else (18, 30)  # the sounding square's columns
            masks[t, 8:20, first:last] = 1
            audio[t, 0 if left else 1] = 1.0
            audio[t, 2:] = rng.normal(0, 0.1, dim - 2)
        clips.append(ToyClip(f"v{v}", frames, masks, audio, split="test" if v >= videos - 2 else "train"))
    write_clip_shards(root, dataset, clips, default_records(SIZE))


def make_toy_params(**over) -> TrainParams:
    base = dict(
        model="combo_tiny",
        datasets=["toy"],
        size=[SIZE, SIZE],
        batch_size=2,
        max_steps=4,
        num_workers=0,
        checkpoint_every=2,
        grad_clip=1.0,
        seed=3,
        threads=1,
    )
    base.update(over)
    return TrainParams(**base)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """Toy shards of dataset "toy", shard 0: 4 train and 2 test videos of 3 frames, 16-d audio."""
    root = tmp_path_factory.mktemp("shards")
    write_toy_shards(root)
    return root


@pytest.fixture(scope="session")
def toy_shards():
    """The toy shard writer, for tests that need other sizes: ``toy_shards(root, dim=1024)``."""
    return write_toy_shards


@pytest.fixture(scope="session")
def toy_params():
    """``toy_params(**overrides) -> TrainParams`` for the toy shards (combo_tiny, 4 steps)."""
    return make_toy_params
