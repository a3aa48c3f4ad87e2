"""VGGish log-mel front end: exact reference values, batching, T-example rule, silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import logmel
from pipeline.audio.features import batch_mel_examples, clip_mel_examples

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "avs_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as npz:
        return {key: npz[key] for key in ("wav_int16", "vggish_logmel")}


def test_reproduces_published_vggish_examples(reference):
    examples = logmel.logmel_examples(logmel.int16_to_float(reference["wav_int16"]))
    assert examples.shape == reference["vggish_logmel"].shape == (5, 96, 64)
    np.testing.assert_allclose(examples, reference["vggish_logmel"], rtol=0, atol=1e-6)
    # The float32 values stored in shards are still within 1e-6.
    np.testing.assert_allclose(examples.astype(np.float32), reference["vggish_logmel"], rtol=0, atol=1e-6)


def test_clip_features_path_matches_reference(reference):
    examples, raw_count = clip_mel_examples(reference["wav_int16"], 5)
    assert raw_count == 5
    np.testing.assert_allclose(logmel.log_mel(examples), reference["vggish_logmel"], rtol=0, atol=1e-6)


def test_periodic_hann_and_mel_matrix():
    window = logmel.periodic_hann()
    assert window.shape == (400,) and window[0] == 0.0 and window[200] == pytest.approx(1.0)
    assert window[1] == pytest.approx(window[-1])  # periodic: symmetric around index 200, not 199.5
    weights = logmel.mel_weight_matrix()
    assert weights.shape == (257, 64)
    assert np.all(weights[0] == 0.0)  # DC bin carries no weight
    assert np.all(weights.max(axis=0) > 0.0)  # every band sees at least one bin
    bin_hz = np.linspace(0, 8000, 257)
    active = bin_hz[weights.sum(axis=1) > 0]
    assert active.min() > 125.0 and active.max() < 7500.0


def test_batch_equals_one_clip_at_a_time():
    rng = np.random.default_rng(0)
    waves = rng.uniform(-0.5, 0.5, size=(3, 3 * 16000))
    batched = logmel.logmel_examples(waves)
    assert batched.shape == (3, 3, 96, 64)
    for row in range(3):
        np.testing.assert_allclose(batched[row], logmel.logmel_examples(waves[row]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seconds", range(1, 11))
def test_t_seconds_of_audio_give_t_examples(seconds):
    assert logmel.num_examples(seconds * 16000) == seconds
    examples, raw_count = clip_mel_examples(np.zeros(seconds * 16000, np.int16), seconds)
    assert examples.shape == (seconds, 96, 64) and raw_count == seconds


def test_short_clip_repeats_last_example_and_long_clip_is_trimmed():
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(int(2.5 * 16000)) * 3000).astype(np.int16)
    padded, raw_count = clip_mel_examples(audio, 5)
    assert raw_count == 2 and padded.shape == (5, 96, 64)
    for index in (2, 3, 4):
        np.testing.assert_array_equal(padded[index], padded[1])
    assert not np.array_equal(padded[0], padded[1])
    long_audio = (rng.standard_normal(12 * 16000) * 3000).astype(np.int16)
    trimmed, raw_count = clip_mel_examples(long_audio, 5)
    assert raw_count == 12 and trimmed.shape == (5, 96, 64)
    full = logmel.mel_examples(logmel.int16_to_float(long_audio))
    np.testing.assert_array_equal(trimmed, full[:5])


def test_fit_example_count_rules():
    examples = np.arange(3)[:, None, None] * np.ones((3, 96, 64))
    assert logmel.fit_example_count(examples, 5)[:, 0, 0].tolist() == [0, 1, 2, 2, 2]
    assert logmel.fit_example_count(examples, 2)[:, 0, 0].tolist() == [0, 1]
    with pytest.raises(ValueError, match="empty"):
        logmel.fit_example_count(np.zeros((0, 96, 64)), 5)


def test_silence_and_tiny_clips_are_finite():
    silent, _ = clip_mel_examples(np.zeros(5 * 16000, np.int16), 5)
    values = logmel.log_mel(silent)
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values, np.log(0.01))
    tiny, raw_count = clip_mel_examples(np.ones(100, np.int16), 5)  # shorter than one FFT window
    assert raw_count == 0 and tiny.shape == (5, 96, 64) and np.isfinite(logmel.log_mel(tiny)).all()


def test_batch_mel_examples_mixed_lengths_keep_order():
    rng = np.random.default_rng(2)
    clips = [((rng.standard_normal(n) * 1000).astype(np.int16), t) for n, t in [(80000, 5), (20000, 3), (80000, 5)]]
    batched = batch_mel_examples(clips)
    for (audio, seconds), (mel, count) in zip(clips, batched):
        single, single_count = clip_mel_examples(audio, seconds)
        np.testing.assert_allclose(mel, single, rtol=1e-9, atol=1e-9)
        assert count == single_count


def test_rejects_non_int16_audio():
    with pytest.raises(TypeError, match="int16"):
        logmel.int16_to_float(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="int16"):
        clip_mel_examples(np.zeros(16000, np.float32), 1)
