"""The extract stage end to end on a folder of good and deliberately bad videos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import media
from pipeline.failures import read_failures
from pipeline.manifest import read_manifest
from pipeline.shards import ShardReader
from stages.cli import main
from tests.conftest import decode_index, index_frames, tone

REPO = Path(__file__).resolve().parents[2]


def write_params(tmp: Path, root: Path, shards=(0,), workers=0, **extract) -> Path:
    params = {
        "data": {
            "root": str(tmp / "data"),
            "manifests": str(tmp / "manifests"),
            "datasets": ["vids"],
            "shards": list(shards),
        },
        "dask": {"n_workers": workers},
        "manifest": {"datasets": {"vids": {"source": "folder", "root": str(root), "seconds": 5}}},
        "extract": {"frame_size": [32, 48], **extract},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def messy_folder(tmp_path, make_video):
    root = tmp_path / "videos"
    (root / "sub dir").mkdir(parents=True)
    make_video("good.mp4", folder=root)
    make_video("ünïcode clip.mp4", folder=root / "sub dir", channels=6, rate=48_000)
    make_video("short.mp4", seconds=2.2, folder=root)
    make_video("silent.mp4", audio=False, folder=root)
    make_video("odd.mkv", size=(45, 77), folder=root)  # odd frame size (lossless ffv1)
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("not a video\n" * 40)
    good = (root / "good.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 3])
    return root


def _odd(make_video):
    return make_video


def test_folder_manifest_and_extract_with_bad_inputs(tmp_path, messy_folder, make_video):
    # Variable frame rate: the second half of the clip runs at double speed.
    frames = index_frames(150)
    media.encode_video(
        messy_folder / "vfr.mkv", frames, 25, tone(4.6), vcodec="ffv1", pts_expr="if(lt(N,75),N/25,3+(N-75)/50)/TB"
    )
    params = write_params(tmp_path, messy_folder)
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    rows = {r.video_id: r for r in read_manifest(tmp_path / "manifests" / "vids.csv")}
    assert "sub dir/ünïcode clip.mp4" in rows and rows["sub dir/ünïcode clip.mp4"].audio_channels == "6"
    assert rows["empty.mp4"].probe_error and "empty" in rows["empty.mp4"].probe_error
    assert main(["extract", "--params", str(params), "--dataset", "vids", "--shard", "0", "--no-progress"]) == 0
    shard = tmp_path / "data" / "vids" / "extract" / "shard-0.h5"
    failures = {f["video_id"]: f for f in read_failures(shard.with_name("shard-0.failures.csv"))}
    errors = {k for k, f in failures.items() if f["level"] == "error"}
    assert errors == {"empty.mp4", "notes.mp4", "truncated.mp4"}
    for vid in errors:
        assert vid in failures[vid]["source"] or failures[vid]["reason"]
    assert failures["silent.mp4"]["level"] == "warning" and "silence" in failures["silent.mp4"]["reason"]
    short_reasons = [
        f["reason"] for f in read_failures(shard.with_name("shard-0.failures.csv")) if f["video_id"] == "short.mp4"
    ]
    assert failures["short.mp4"]["level"] == "warning" and len(short_reasons) == 2
    assert any("last frame repeated" in r for r in short_reasons)
    assert any("2.20 s gives 2 of T=5 log-mel examples" in r and "repeat_last" in r for r in short_reasons)
    with ShardReader(shard) as r:
        ok = set(r.video_ids())
        assert ok == {"good.mp4", "sub dir/ünïcode clip.mp4", "short.mp4", "silent.mp4", "odd.mkv", "vfr.mkv"}
        for vid in ok:
            assert r.read(vid, "frames").shape == (5, 32, 48, 3)
            # short_audio: repeat_last keeps a too-short stream as it is (the log-mel stage repeats its last example)
            short_audio = {"short.mp4": 2.2, "vfr.mkv": 4.6}  # 4.6 s of audio: 4 of 5 log-mel examples
            size = r.read(vid, "audio").size
            assert size == 80_000 if vid not in short_audio else abs(size - short_audio[vid] * 16_000) <= 1024
        assert not r.read("silent.mp4", "audio").any()
        assert r.video_attrs("short.mp4")["frame_indices"] == [23, 48, 54, 54, 54]
        # VFR: AVSBench counts decoded frames, so the kept frames are still n = 23, 48, ...
        assert [decode_index(f) for f in r.read("vfr.mkv", "frames")] == [23, 48, 73, 98, 123]
        attrs = r.video_attrs("good.mp4")
        assert len(attrs["source_sha256"]) == 64 and attrs["params_hash"]
        assert r.file_attrs()["package_version"]


def test_strict_mode_exits_nonzero_but_keeps_good_videos(tmp_path, messy_folder):
    params = write_params(tmp_path, messy_folder, strict=True)
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    assert main(["extract", "--params", str(params), "--dataset", "vids", "--shard", "0", "--no-progress"]) == 1
    with ShardReader(tmp_path / "data" / "vids" / "extract" / "shard-0.h5") as r:
        assert "good.mp4" in r.video_ids()


def test_adding_a_video_changes_exactly_one_shard(tmp_path, make_video):
    root = tmp_path / "videos"
    root.mkdir()
    for i in range(6):
        make_video(f"v{i}.mp4", seconds=1.2, folder=root)
    params = write_params(tmp_path, root, shards=(0, 1, 2, 3))
    slices = tmp_path / "data" / "vids" / "manifest"
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in slices.glob("*.csv")}
    make_video("v_new.mp4", seconds=1.2, folder=root)
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    after = {p.name: p.read_bytes() for p in slices.glob("*.csv")}
    assert len([n for n in after if after[n] != before[n]]) == 1


def test_rejects_ids_that_escape(tmp_path):
    root = tmp_path / "ms3"
    root.mkdir()
    (root / "ms3_meta_data.csv").write_text("video_id,split\n../../etc/passwd,train\n")
    params = write_params(tmp_path, root)
    params.write_text(params.read_text().replace("source: folder", "source: avsbench_ms3"))
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 2


def _run_extract(params: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.cli",
            "extract",
            "--params",
            str(params),
            "--dataset",
            "vids",
            "--shard",
            "0",
            "--no-progress",
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_killed_run_then_rerun_equals_uninterrupted(tmp_path, make_video):
    root = tmp_path / "videos"
    root.mkdir()
    for i in range(8):
        make_video(f"v{i}.mp4", seconds=5.2, folder=root)
    params = write_params(tmp_path, root)
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    shard = tmp_path / "data" / "vids" / "extract" / "shard-0.h5"
    assert _run_extract(params).wait(timeout=300) == 0
    reference = shard.read_bytes()
    shard.unlink()
    proc = _run_extract(params)
    time.sleep(2.0)  # mid-run: the writer has the temporary file open
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not shard.exists() or shard.read_bytes() == reference  # no partial shard under the real name
    # byte for byte: computed again (a killed run that had already finished would otherwise lend its videos)
    assert _run_extract(params, "--no-reuse").wait(timeout=300) == 0
    assert shard.read_bytes() == reference
    assert not list(shard.parent.glob("*.tmp-*"))  # the killed writer's temporary was cleaned up


@pytest.mark.parametrize("processes", [False, True])
def test_dask_local_cluster_gives_same_shard(tmp_path, make_video, processes):
    root = tmp_path / "videos"
    root.mkdir()
    for i in range(4):
        make_video(f"v{i}.mp4", seconds=5.2, folder=root)
    params = write_params(tmp_path, root, workers=0)
    params.write_text(
        params.read_text().replace("n_workers: 0", f"n_workers: 0\n  processes: {str(processes).lower()}")
    )
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    shard = tmp_path / "data" / "vids" / "extract" / "shard-0.h5"
    assert main(["extract", "--params", str(params), "--dataset", "vids", "--shard", "0", "--no-progress"]) == 0
    in_process = shard.read_bytes()
    assert (
        main(
            [*"extract --dataset vids --shard 0 --no-progress --no-reuse --workers 2".split(), "--params", str(params)]
        )
        == 0
    )
    assert shard.read_bytes() == in_process


def test_shard_where_every_video_failed_exits_1_with_one_line(tmp_path, capsys):
    """The manifest said these files were videos (an old manifest, files replaced since): extraction fails
    for every one, and the stage exits 1 even though strict is off."""
    from pipeline.manifest import ManifestRow, write_manifest

    root = tmp_path / "videos"
    root.mkdir()
    rows = []
    for i in range(3):
        (root / f"broken {i}.mp4").write_text("not a video\n" * 40)
        rows.append(
            ManifestRow(
                video_id=f"broken {i}.mp4",
                split="test",
                task="raw",
                source_video=str(root / f"broken {i}.mp4"),
                duration="5.200",
                fps="25",
                audio_channels="1",
                audio_rate="16000",
                num_seconds=5,
            )
        )
    manifest, out = tmp_path / "rows.csv", tmp_path / "data" / "vids" / "extract" / "shard-0.h5"
    write_manifest(rows, manifest)
    params = write_params(tmp_path, root)
    code = main(["extract", "--params", str(params), "--manifest", str(manifest), "--out", str(out), "--no-progress"])
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # the line stages.common.finish prints
    assert "vids" in last and "every video failed (3); most common reason (3x)" in last and "decode" in last


def test_sigkill_during_extraction_leaves_no_temporaries(tmp_path, make_video):
    """kill -9 of the extracting process: its ffmpeg children end on their own (broken pipe), nothing is
    left in the temporary folder, and the next run leaves only the shard and its failures file."""
    import psutil

    root = tmp_path / "videos"
    root.mkdir()
    make_video("long.mp4", seconds=300, fps=4, size=(32, 64), folder=root)
    params = write_params(tmp_path, root)
    params.write_text(params.read_text().replace("seconds: 5", "seconds: null"))
    assert main(["manifest", "--params", str(params), "--dataset", "vids", "--no-progress"]) == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "TMP": str(scratch), "TEMP": str(scratch)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.cli",
            "extract",
            "--params",
            str(params),
            "--dataset",
            "vids",
            "--shard",
            "0",
            "--no-progress",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    children: list = []
    while time.monotonic() < deadline and not children:  # wait until ffmpeg is decoding for it
        children = [c for c in parent.children(recursive=True) if "ffmpeg" in c.name()]
        time.sleep(0.05)
    assert children, "extraction never started ffmpeg"
    os.kill(proc.pid, signal.SIGKILL)  # only the Python process: its children are not told
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive  # orphaned ffmpeg processes end on the broken pipe
    assert list(scratch.iterdir()) == []
    assert main(["extract", "--params", str(params), "--dataset", "vids", "--shard", "0", "--no-progress"]) == 0
    out = tmp_path / "data" / "vids" / "extract"
    assert sorted(p.name for p in out.iterdir()) == ["shard-0.failures.csv", "shard-0.h5"]


def test_short_audio_policies():
    from pipeline.audio.features import clip_mel_examples
    from pipeline.extraction import apply_short_audio

    real = tone(2.2)  # 2 whole log-mel examples for T = 5
    padded = media.fit_audio(real, 5)
    kept, warning = apply_short_audio(padded, real.size, 5, "repeat_last")
    assert kept.size == real.size and "2 of T=5" in warning and "repeated" in warning
    mel, count = clip_mel_examples(kept, 5)
    assert count == 2 and np.array_equal(mel[4], mel[1])  # the official rule: the last example repeated
    silent, warning = apply_short_audio(padded, real.size, 5, "silence")
    assert silent is padded and "silence" in warning
    assert apply_short_audio(padded, 5 * 16_000, 5, "repeat_last") == (padded, None)  # long enough: untouched
    assert apply_short_audio(np.zeros(80_000, np.int16), 0, 5, "repeat_last")[1] is None  # no audio stream


def test_example_count_matches_the_logmel_front_end():
    from pipeline.audio.logmel import num_examples
    from pipeline.extraction import logmel_example_count

    for samples in [0, 399, 400, 15_599, 15_600, 15_601, 30_959, 30_960, 35_200, 79_999, 80_000, 2_400_000]:
        assert logmel_example_count(samples) == num_examples(samples), samples
