from __future__ import annotations

import numpy as np
import pytest

from pipeline import media
from tests.conftest import decode_index


def test_probe_reads_banner(make_video):
    info = media.probe(make_video(channels=6, rate=48_000))
    assert info.fps == 25 and (info.width, info.height) == (128, 64)
    assert info.audio_rate == 48_000 and info.audio_channels == 6
    assert info.duration == pytest.approx(5.2, abs=0.06)


@pytest.mark.parametrize("fps", [25, 30, 24])
def test_extract_takes_avsbench_frame_indices(make_video, fps):
    path = make_video(fps=fps, seconds=5.5)
    clip = media.extract_clip(path, 5, size=(224, 224))
    expected = [int(l * fps + 15 / 16 * fps) for l in range(5)]
    assert clip.frame_indices == expected
    # The pixels prove it: each kept frame encodes its own decoded index.
    assert [decode_index(f) for f in clip.frames] == expected
    assert clip.frames.shape == (5, 224, 224, 3) and clip.frames.dtype == np.uint8


def test_fractional_fps_is_rounded_like_avsbench(make_video):
    path = make_video(fps=29.97, seconds=5.4)
    clip = media.extract_clip(path, 5)
    assert clip.frame_indices == [int(l * 30 + 15 / 16 * 30) for l in range(5)]
    assert [decode_index(f) for f in clip.frames] == clip.frame_indices


def test_short_video_clamps_to_last_frame_and_pads_audio(make_video):
    path = make_video(seconds=2.6)  # 65 frames: seconds 2..4 need frames past the end
    clip = media.extract_clip(path, 5)
    assert clip.frame_indices == [23, 48, 64, 64, 64]
    assert [decode_index(f) for f in clip.frames] == [23, 48, 64, 64, 64]
    assert clip.audio.shape == (80_000,)
    assert np.abs(clip.audio[:40_000]).max() > 1000  # real tone
    assert np.all(clip.audio[45_000:] == 0)  # padded with silence


def test_multichannel_audio_downmixed_and_resampled(make_video):
    clip = media.extract_clip(make_video(channels=6, rate=48_000), 5)
    assert clip.audio.dtype == np.int16 and clip.audio.shape == (80_000,)
    spectrum = np.abs(np.fft.rfft(clip.audio[:16_000].astype(float)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2  # the 440 Hz tone survives the downmix at 16 kHz


def test_no_audio_stream(make_video):
    path = make_video(audio=False)
    clip = media.extract_clip(path, 5)
    assert clip.audio_source.startswith("silence") and not clip.audio.any()
    with pytest.raises(media.MediaError, match="no audio stream"):
        media.extract_clip(path, 5, missing_audio="fail")


@pytest.mark.parametrize(
    "content,reason", [(b"", "empty file"), (b"this is not a video at all\n" * 50, "not a readable")]
)
def test_bad_files_raise_with_name(tmp_path, content, reason):
    path = tmp_path / "bad file é.mp4"
    path.write_bytes(content)
    with pytest.raises(media.MediaError, match=reason) as err:
        media.probe(path)
    assert str(path) in str(err.value)


def test_truncated_file(make_video, tmp_path):
    good = make_video()
    data = good.read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(media.MediaError) as err:
        media.extract_clip(bad, 5)
    assert "truncated.mp4" in str(err.value)


def test_bigbuckbunny_real_clip(bigbuckbunny):
    info = media.probe(bigbuckbunny)
    assert info.audio_channels == 6 and info.audio_rate == 48_000
    clip = media.extract_clip(bigbuckbunny, 5, info=info)
    assert clip.frames.shape == (5, 224, 224, 3)
    assert clip.audio.shape == (80_000,) and clip.audio.dtype == np.int16
    assert clip.frame_indices == [23, 48, 73, 98, 123]
    assert np.abs(clip.audio).max() > 100


def test_encode_is_deterministic(tmp_path):
    from tests.conftest import index_frames, tone

    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for p in (a, b):
        media.encode_video(p, index_frames(30), 25, tone(1.2))
    assert a.read_bytes() == b.read_bytes()


def test_audio_given_in_chunks_encodes_like_one_array(tmp_path):
    """Long videos are encoded without holding their audio: chunks of [s,C] give the same file."""
    from tests.conftest import index_frames, tone

    whole, chunked = tmp_path / "whole.mp4", tmp_path / "chunked.mp4"
    audio = tone(1.2, channels=2)
    media.encode_video(whole, index_frames(30), 25, audio)
    media.encode_video(
        chunked,
        (index_frames(30)[i : i + 7] for i in range(0, 30, 7)),
        25,
        iter(audio[i : i + 5000] for i in range(0, len(audio), 5000)),
    )
    assert chunked.read_bytes() == whole.read_bytes()


# int16 samples of the first 5 s of bigbuckbunny.mp4 (AAC 48 kHz, 6 channels) decoded to 16 kHz mono by
# the pinned imageio-ffmpeg binary; the frames are checked the same way. Recompute only when the pin moves.
PINNED_FFMPEG = "ffmpeg-linux-x86_64-v9.0.2"
BBB_AUDIO_SHA256 = "3755961de09902783d984b797c8dd46f1902eb2bd87dc15a60d76444de71911f"
BBB_FRAMES_SHA256 = "7b444497e29e0a4f3ae4ce70304015e7d6db1c1b8c31f68c1f91b7a2b265cd7c"


def test_decoding_gives_the_same_samples_on_every_x86_64_cpu(bigbuckbunny):
    """Audio is decoded without CPU-specific code (AAC decoding and resampling gave other samples
    with SSE2 only than with AVX), and the AVSBench frames did not change with the SIMD level: both
    equal what they were on the machine that committed the digests (an AVX-512 CPU)."""
    import hashlib
    import platform
    from pathlib import Path

    if Path(media.pinned_ffmpeg_exe()).name != PINNED_FFMPEG or platform.machine() != "x86_64":
        pytest.skip(f"the reference samples are those of {PINNED_FFMPEG} on x86-64")
    if Path(media.ffmpeg_exe()) != Path(media.pinned_ffmpeg_exe()):
        pytest.skip("decoding does not use the pinned ffmpeg here (AVS_FFMPEG is set)")
    audio = media.read_audio(bigbuckbunny, 5)
    frames = media.extract_clip(bigbuckbunny, 5, size=(224, 224)).frames
    assert hashlib.sha256(audio.tobytes()).hexdigest() == BBB_AUDIO_SHA256
    assert hashlib.sha256(frames.tobytes()).hexdigest() == BBB_FRAMES_SHA256
