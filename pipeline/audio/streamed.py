"""The audio features of a long clip, read from the extraction shard and written to the audio shard one
window of examples at a time: memory holds one window (64 s of audio and its features), whatever T.

The windows are those of :func:`pipeline.audio.features.long_clip_features` (the frames of an example use
only its own samples), so the arrays equal what it returns for the whole clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.audio.encoders import AudioEncoder
from pipeline.audio.features import (
    EXAMPLE_STRIDE_SAMPLES,
    MIN_SAMPLES_FOR_ONE_EXAMPLE,
    WINDOW_EXAMPLES,
    _encode,
    int16_to_float,
    long_clip_features,
    mel_examples,
    num_examples,
)
from pipeline.audio.logmel import EXAMPLE_FRAMES, NUM_MEL_BANDS
from pipeline.shards import ShardReader, ShardWriter

STREAM_SECONDS = 2 * WINDOW_EXAMPLES  # clips longer than this are streamed in the main process


def check_audio(reader: ShardReader, video_id: str) -> int:
    """The sample count of a video's stored audio, after the checks :func:`validate_clip` makes on a
    whole clip (int16, mono, not empty), made without reading it."""
    if not reader.has_array(video_id, "audio"):
        raise ValueError("no 'audio' array in the extraction shard")
    shape, dtype = reader.shape(video_id, "audio"), reader.dtype(video_id, "audio")
    if dtype != np.int16:
        raise ValueError(f"audio must be int16 PCM, got {dtype}")
    if len(shape) != 1:
        raise ValueError(f"audio must be mono [N], got shape {shape}")
    if shape[0] == 0:
        raise ValueError("audio is empty")
    return int(shape[0])


def stream_clip_features(
    reader: ShardReader,
    writer: ShardWriter,
    video_id: str,
    num_seconds: int,
    encoder: AudioEncoder,
    attrs: dict[str, Any],
    window_examples: int = WINDOW_EXAMPLES,
) -> None:
    """Write ``logmel`` float32 [T,96,64] and ``embeddings`` float32 [T,D] of one clip of ``reader`` to
    ``writer`` with ``attrs`` (plus ``num_examples``), ``window_examples`` examples at a time; examples
    past the audio repeat the last one (AVSBench). Raises ValueError naming what is wrong with the stored audio."""
    samples = check_audio(reader, video_id)
    raw_count = num_examples(samples)
    have = min(raw_count, num_seconds)
    attrs = {**attrs, "num_examples": raw_count}
    shapes = {"logmel": (num_seconds, EXAMPLE_FRAMES, NUM_MEL_BANDS), "embeddings": (num_seconds, encoder.dim)}
    with writer.begin_video(video_id, shapes, dict.fromkeys(shapes, np.float32), attrs) as video:
        for start in range(0, have, window_examples):
            count = min(window_examples, have - start)
            first = start * EXAMPLE_STRIDE_SAMPLES
            stop = first + (count - 1) * EXAMPLE_STRIDE_SAMPLES + MIN_SAMPLES_FOR_ONE_EXAMPLE
            logmel, embeddings = _encode(
                mel_examples(int16_to_float(reader.read_rows(video_id, "audio", first, stop))), encoder
            )
            video.write("logmel", start, logmel)
            video.write("embeddings", start, embeddings)
        if have == 0:  # audio shorter than one example (tiny): its one padded example, repeated below
            one = long_clip_features(reader.read(video_id, "audio"), 1, encoder)
            logmel, embeddings, have = one["logmel"], one["embeddings"], 1
            video.write("logmel", 0, logmel)
            video.write("embeddings", 0, embeddings)
        for start in range(have, num_seconds, window_examples):
            count = min(window_examples, num_seconds - start)
            video.write("logmel", start, np.broadcast_to(logmel[-1], (count, *logmel.shape[1:])))
            video.write("embeddings", start, np.broadcast_to(embeddings[-1], (count, *embeddings.shape[1:])))
