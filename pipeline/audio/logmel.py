"""VGGish log-mel front end, vectorised over whole batches of clips.

Reproduces the published VGGish input pipeline (``waveform_to_examples``) exactly:
16 kHz mono float waveform in [-1, 1) -> 25 ms periodic-Hann frames every 10 ms ->
magnitude of a 512-point FFT (257 bins) -> 64 HTK-mel bands between 125 and 7500 Hz ->
log(mel + 0.01) -> non-overlapping examples of 96 frames (0.96 s) x 64 bands.

Everything runs in float64 numpy on stacked frames (no Python loop over frames), so a
batch of clips of equal length costs one FFT call.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
FFT_SIZE = 512  # next power of two above the window
NUM_BINS = FFT_SIZE // 2 + 1
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EMBEDDING_DIM = 128  # here (not in vggish.py) so that the encoder's registry entry needs no torch
EXAMPLE_FRAMES = 96  # 0.96 s at 100 frames per second
EXAMPLE_HOP_FRAMES = 96  # non-overlapping
# Shortest waveform that yields one whole example: 96 frames of 400 samples every 160.
MIN_SAMPLES_FOR_ONE_EXAMPLE = WINDOW_SAMPLES + (EXAMPLE_FRAMES - 1) * HOP_SAMPLES

# HTK mel scale: mel = 1127 * ln(1 + hz / 700).
_HTK_MEL_FACTOR = 1127.0
_HTK_MEL_BREAK_HZ = 700.0


def hertz_to_htk_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel value of each frequency (same shape as the input)."""
    return _HTK_MEL_FACTOR * np.log1p(np.asarray(hertz, dtype=np.float64) / _HTK_MEL_BREAK_HZ)


@cache
def periodic_hann(length: int = WINDOW_SAMPLES) -> np.ndarray:
    """Periodic Hann window [length] float64 (the DFT-even variant, not numpy's symmetric one)."""
    n = np.arange(length, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)
    window.setflags(write=False)
    return window


@cache
def mel_weight_matrix(
    num_bands: int = NUM_MEL_BANDS,
    num_bins: int = NUM_BINS,
    sample_rate: int = SAMPLE_RATE,
    lower_hz: float = MEL_MIN_HZ,
    upper_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """Triangular HTK-mel filterbank [num_bins, num_bands] float64 applied to FFT magnitudes.

    Band edges are equally spaced on the mel axis; each triangle is measured in mel
    (not Hz) and the DC bin gets no weight, as in VGGish's ``mel_features``.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_hz < upper_hz <= nyquist:
        raise ValueError(f"mel band limits must satisfy 0 <= {lower_hz} < {upper_hz} <= {nyquist}")
    bin_mels = hertz_to_htk_mel(np.linspace(0.0, nyquist, num_bins))
    edges = np.linspace(hertz_to_htk_mel(lower_hz), hertz_to_htk_mel(upper_hz), num_bands + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bin_mels[:, None]) / (upper - centre)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def int16_to_float(waveform: np.ndarray) -> np.ndarray:
    """int16 PCM -> float64 in [-1, 1) by dividing by 32768 (VGGish's wav reader convention)."""
    waveform = np.asarray(waveform)
    if waveform.dtype != np.int16:
        raise TypeError(f"expected int16 PCM samples, got dtype {waveform.dtype}")
    return waveform.astype(np.float64) / 32768.0


def num_examples(num_samples: int) -> int:
    """Number of whole 0.96 s examples that ``mel_examples`` returns for a clip of that many samples."""
    if num_samples < MIN_SAMPLES_FOR_ONE_EXAMPLE:
        return 0
    num_frames = 1 + (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES
    return 1 + (num_frames - EXAMPLE_FRAMES) // EXAMPLE_HOP_FRAMES


def mel_spectrogram(waveforms: np.ndarray) -> np.ndarray:
    """Mel magnitudes (before the log) of a batch of clips.

    waveforms: float [..., N] at 16 kHz (N >= 400).
    returns: float64 [..., F, 64] with F = 1 + (N - 400) // 160 frames (no padding).
    """
    waveforms = np.asarray(waveforms, dtype=np.float64)
    if waveforms.shape[-1] < WINDOW_SAMPLES:
        raise ValueError(f"a clip needs at least {WINDOW_SAMPLES} samples for one frame, got {waveforms.shape[-1]}")
    # [..., F, 400] view of the waveform; the window multiply makes the one copy.
    frames = np.lib.stride_tricks.sliding_window_view(waveforms, WINDOW_SAMPLES, axis=-1)
    frames = frames[..., ::HOP_SAMPLES, :] * periodic_hann()
    magnitudes = np.abs(np.fft.rfft(frames, n=FFT_SIZE, axis=-1))
    # One 2-D GEMM: a stacked (>2-D) matmul is several times slower here (one small BLAS call per clip).
    mel = magnitudes.reshape(-1, NUM_BINS) @ mel_weight_matrix()
    return mel.reshape(*magnitudes.shape[:-1], NUM_MEL_BANDS)


def frame_examples(per_frame: np.ndarray) -> np.ndarray:
    """Cut [..., F, 64] into non-overlapping examples [..., E, 96, 64] (a view; trailing frames dropped)."""
    num_frames = per_frame.shape[-2]
    count = 0 if num_frames < EXAMPLE_FRAMES else 1 + (num_frames - EXAMPLE_FRAMES) // EXAMPLE_HOP_FRAMES
    used = per_frame[..., : count * EXAMPLE_FRAMES, :]
    return used.reshape(*per_frame.shape[:-2], count, EXAMPLE_FRAMES, per_frame.shape[-1])


def mel_examples(waveforms: np.ndarray) -> np.ndarray:
    """Mel magnitudes cut into examples: float [..., N] -> float64 [..., E, 96, 64]."""
    return frame_examples(mel_spectrogram(waveforms))


def log_mel(mel: np.ndarray, log_offset: float = VGGISH_LOG_OFFSET) -> np.ndarray:
    """log(mel + offset); the offset keeps silence finite (log(0.01) for VGGish)."""
    return np.log(mel + log_offset)


def logmel_examples(waveforms: np.ndarray, log_offset: float = VGGISH_LOG_OFFSET) -> np.ndarray:
    """VGGish examples of a batch of clips: float [..., N] in [-1, 1) -> float64 [..., E, 96, 64]."""
    return log_mel(mel_examples(waveforms), log_offset)


def fit_example_count(examples: np.ndarray, count: int) -> np.ndarray:
    """Exactly ``count`` examples along axis -3: trim extra ones, or repeat the last one (AVSBench's rule).

    examples: [..., E, 96, 64] with E >= 1. returns [..., count, 96, 64].
    """
    have = examples.shape[-3]
    if count < 1:
        raise ValueError(f"the example count must be >= 1, got {count}")
    if have == 0:
        raise ValueError("cannot pad an empty set of examples: the clip is shorter than 0.96 s")
    if have >= count:
        return examples[..., :count, :, :]
    index = np.minimum(np.arange(count), have - 1)
    return np.take(examples, index, axis=-3)
