"""Videos of any length: constant-size frame selection, windowed decoding, the AVSBench frame rule kept.

Before the windowed extraction, ``select`` got one ``eq(n,i)`` term per second and ffmpeg refused
expressions of more than 100 terms, so no video of 100 s or more could be extracted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import media
from pipeline.manifest import read_manifest
from pipeline.shards import ShardReader
from stages.cli import main
from tests.conftest import tone

H, W = 48, 64


def wide_index_frames(start: int, count: int) -> np.ndarray:
    """Frames [count,48,64,3] whose content is their index (16 bits: two rows of 8 black/white stripes)."""
    frames = np.zeros((count, H, W, 3), np.uint8)
    for k in range(count):
        index = start + k
        for bit in range(16):
            if (index >> bit) & 1:
                row, col = divmod(bit, 8)
                frames[k, row * 24 : (row + 1) * 24, col * 8 : (col + 1) * 8] = 255
    return frames


def read_wide_index(frame: np.ndarray) -> int:
    value = 0
    for bit in range(16):
        row, col = divmod(bit, 8)
        y, x = int((row + 0.5) * frame.shape[0] / 2), int((col + 0.5) * frame.shape[1] / 8)
        value |= int(frame[y, x].mean() > 127) << bit
    return value


def make_long_video(path: Path, seconds: int, fps: int = 4) -> Path:
    """A small, cheap long video: 64x48 at ``fps`` with a 440 Hz tone, frames written in chunks."""
    total = seconds * fps
    chunks = (wide_index_frames(s, min(256, total - s)) for s in range(0, total, 256))
    media.encode_video(path, chunks, fps, tone(seconds), crf=10)
    return path


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return make_long_video(folder / "videos" / "long clip.mp4", 150)


@pytest.mark.parametrize("fps", [1, 2, 4, 16, 24, 25, 29.97, 30, 50, 59.94, 60, 120])
def test_frame_plan_is_avsbench_rule_with_constant_expression(fps):
    short, long = media.FramePlan.for_clip(5, fps, 5.2), media.FramePlan.for_clip(7200, fps, 7201.5)
    for plan in (short, long):
        reference = media.avsbench_frame_indices(plan.num_seconds, fps)
        assert [plan.wanted(sec) for sec in range(plan.num_seconds)] == reference
        if plan.tail_start is None:  # the clip is long enough: ffmpeg outputs exactly the wanted frames
            assert [plan.output_index(j) for j in range(plan.num_seconds)] == reference
    # Long enough, unless the rounded rate outruns the real one: 2 h at 29.97 fps has 215828 frames, but
    # the rule's last frame is 7199 * 30 + 28 = 215998, so the tail is kept and the last seconds clamp.
    assert (long.tail_start is None) == (long.wanted(long.num_seconds - 1) < int(7201.5 * fps) - 1)
    tail = len(f"+gte(n,{long.tail_start})") if long.tail_start is not None else 0
    assert len(long.select_expression()) <= len(short.select_expression()) + 8 + tail  # only the digits grow


def test_frame_plan_tail_covers_a_short_clip():
    # 4.3 s = 107 frames for 5 seconds: the last wanted frames may not exist, so ffmpeg also keeps every
    # frame from two seconds before the end (57), in decoding order after the wanted 23 and 48.
    plan = media.FramePlan.for_clip(5, 25, 4.3)
    assert plan.tail_start == 57
    assert [plan.output_index(j) for j in range(6)] == [23, 48, 57, 58, 59, 60]
    short = media.FramePlan.for_clip(5, 25, 2.6)  # 65 frames: the tail starts before the first wanted frame
    assert [short.output_index(j) for j in range(3)] == [15, 16, 17]


@pytest.mark.parametrize("fps,seconds", [(25, 5.2), (29.97, 5.4), (24, 5.5), (25, 2.6)])
def test_short_clips_equal_the_decode_everything_reference(make_video, fps, seconds):
    """Same frames as decoding every frame and taking AVSBench's (clamped) indices; same audio as read_audio."""
    path = make_video(fps=fps, seconds=seconds, channels=2, rate=44_100)
    clip = media.extract_clip(path, 5, size=(56, 72))
    everything = media.decode_all_frames(path, size=(56, 72), resize_filter="bilinear")
    indices = [min(i, len(everything) - 1) for i in media.avsbench_frame_indices(5, fps)]
    assert clip.frame_indices == indices
    np.testing.assert_array_equal(clip.frames, everything[indices])
    np.testing.assert_array_equal(clip.audio, media.read_audio(path, 5))
    assert clip.audio_samples == pytest.approx(min(seconds, 5) * 16_000, abs=1100)


def test_windows_cover_the_clip_once(long_video):
    windows = list(media.iter_clip_windows(long_video, 150, (H, W), window_seconds=64))
    assert [(w.start, len(w.frames), w.audio.size) for w in windows] == [
        (0, 64, 64 * 16_000),
        (64, 64, 64 * 16_000),
        (128, 22, 22 * 16_000),
    ]
    clip = media.extract_clip(long_video, 150, (H, W), window_seconds=64)
    np.testing.assert_array_equal(np.concatenate([w.frames for w in windows]), clip.frames)
    np.testing.assert_array_equal(np.concatenate([w.audio for w in windows]), clip.audio)
    assert sum(w.audio_samples for w in windows) == clip.audio_samples == 150 * 16_000
    # A second pass at another size (e.g. predict's native-resolution overlays) can skip the audio.
    native = list(media.iter_clip_windows(long_video, 150, (H, W), window_seconds=100, with_audio=False))
    np.testing.assert_array_equal(np.concatenate([w.frames for w in native]), clip.frames)
    assert all(w.audio_samples == 0 and not w.audio.any() for w in native)


def test_extract_stage_on_a_150_s_video(tmp_path, long_video):
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "root": str(tmp_path / "data"),
                    "manifests": str(tmp_path / "manifests"),
                    "datasets": ["long"],
                    "shards": [0],
                },
                "dask": {"n_workers": 0},
                "manifest": {
                    "datasets": {"long": {"source": "folder", "root": str(long_video.parent), "seconds": None}}
                },
                "extract": {"frame_size": [H, W]},
            }
        )
    )
    assert main(["manifest", "--params", str(params), "--dataset", "long", "--no-progress"]) == 0
    assert [r.num_seconds for r in read_manifest(tmp_path / "manifests" / "long.csv")] == [150]
    assert main(["extract", "--params", str(params), "--dataset", "long", "--shard", "0", "--no-progress"]) == 0
    with ShardReader(tmp_path / "data" / "long" / "extract" / "shard-0.h5") as reader:
        frames = reader.read("long clip.mp4", "frames")
        audio = reader.read("long clip.mp4", "audio")
        attrs = reader.video_attrs("long clip.mp4")
    expected = [4 * sec + 3 for sec in range(150)]  # int(l*4 + 15/16*4)
    assert frames.shape == (150, H, W, 3) and list(attrs["frame_indices"]) == expected
    assert [read_wide_index(f) for f in frames] == expected  # the pixels are those frames
    assert audio.shape == (150 * 16_000,)
    last_second = audio[-16_000:].astype(float)
    assert int(np.argmax(np.abs(np.fft.rfft(last_second)))) == pytest.approx(440, abs=2)  # the tone to the end


def test_progress_bar_on_long_videos(long_video, capsys):
    media.extract_clip(long_video, 150, (H, W), progress=True)
    assert "decode long clip.mp4" in capsys.readouterr().err
    media.extract_clip(long_video, 5, (H, W), progress=True)  # short: no bar
    assert "decode" not in capsys.readouterr().err
