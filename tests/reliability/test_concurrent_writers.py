"""Writers that cannot corrupt each other: two writers of one shard at once (also from another PID
namespace), a killed writer's temporary, and a live writer's temporary that must survive."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.atomic import atomic_path, remove_stale_temporaries
from pipeline.shards import ShardReader

REPO = Path(__file__).resolve().parents[2]

# A writer process: writes `videos` videos whose pixels all equal `tag`, pausing between them so
# that two writers overlap, then (unless told to hang) publishes the shard.
WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from pipeline.shards import ShardWriter
    path, tag, videos, pause, hang = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
    with ShardWriter(path, kind="extract", params_hash=str(tag)) as writer:
        for v in range(videos):
            writer.write_video(f"v{v}", {"frames": np.full((2, 64, 64, 3), tag, np.uint8)})
            time.sleep(pause)
        print("written", flush=True)
        if hang:
            time.sleep(600)
""")


def start_writer(
    path: Path, tag: int, videos: int = 6, pause: float = 0.05, hang: bool = False, prefix: tuple[str, ...] = ()
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", WRITER, str(path), str(tag), str(videos), str(pause), "1" if hang else "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_complete_writer(path: Path, tags: set[int], videos: int = 6) -> None:
    with ShardReader(path) as reader:
        assert reader.video_ids() == [f"v{v}" for v in range(videos)]
        values = {int(reader.read(vid, "frames")[0, 0, 0, 0]) for vid in reader.video_ids()}
        assert len(values) == 1 and values <= tags  # every video from the same (complete) writer
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


def test_two_concurrent_writers_publish_one_complete_shard(tmp_path):
    path = tmp_path / "shard-0.h5"
    writers = [start_writer(path, tag) for tag in (11, 22)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert_one_complete_writer(path, {11, 22})


def _unshare_prefix() -> tuple[str, ...]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return (unshare, "--pid", "--fork", "--mount-proc") if probe.returncode == 0 else ()


def test_writers_in_separate_pid_namespaces(tmp_path):
    prefix = _unshare_prefix()
    if not prefix:
        pytest.skip("unshare --pid is not permitted here (needs root or user namespaces)")
    path = tmp_path / "shard-0.h5"
    # Both writers see themselves as PID 1-ish: PID-based staleness would make them delete each other.
    writers = [start_writer(path, tag, prefix=prefix) for tag in (33, 44)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert_one_complete_writer(path, {33, 44})


def test_a_killed_writers_temporary_is_removed_and_a_live_ones_kept(tmp_path):
    path = tmp_path / "shard-0.h5"
    killed = start_writer(path, 1, videos=1, hang=True)
    live = start_writer(path, 2, videos=1, hang=True)
    for writer in (killed, live):
        assert writer.stdout.readline().strip() == "written"  # both temporaries exist, both locked
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    try:
        removed = remove_stale_temporaries(path)
        assert len(removed) == 1  # the killed writer's only
        assert len([p for p in tmp_path.iterdir() if ".tmp-" in p.name and not p.name.endswith(".lock")]) == 1
    finally:
        live.kill()
        live.wait(timeout=30)
    assert not path.exists()  # nobody published


def test_atomic_path_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as tmp:
        assert tmp.exists() and tmp.parent == tmp_path and tmp.name.startswith(".out.txt.tmp-")
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
