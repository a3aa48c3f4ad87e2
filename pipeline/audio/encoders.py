"""Registry of audio encoders: log-mel examples [N,96,64] -> embeddings [N,D].

An encoder is a class registered with ``@register_encoder("name")``; ``build_encoder(name, **cfg)``
instantiates it. Each encoder takes only its own keyword arguments (``encoder_arguments(name)``; all
take checkpoint, batch_size and num_threads, VGGish also pca, pca_checkpoint and allow_random_init, YAMNet
also cache_dir) and exposes:

- ``dim``: embedding width D;
- ``log_offset``: the offset of log(mel + offset) the network was trained with (the mel
  examples are shared; only the log floor differs between VGGish and YAMNet);
- ``provenance``: str -> str attributes recorded in the output shard;
- optionally ``describe(**cfg) -> provenance | None`` (a static method): the provenance without building the
  encoder (no weights loaded), so that a rerun that computes nothing loads nothing (:func:`describe_encoder`);
- ``encode(examples: float32 [N,96,64]) -> float32 [N,D]``, batched internally.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from pipeline.registry import Registry


class AudioEncoderError(RuntimeError):
    """An encoder cannot be built (missing or unreadable weights, bad configuration)."""


class AudioEncoder(Protocol):
    dim: int
    log_offset: float
    provenance: dict[str, str]

    def encode(self, examples: np.ndarray) -> np.ndarray: ...


# The built-in encoders' modules are imported on first use of the registry (they import this module).
# Neither imports torch: listing the encoders (every audio params check) must not cost a torch import.
_ENCODERS = Registry("audio encoder", modules=("pipeline.audio.vggish_encoder", "pipeline.audio.yamnet"))


def register_encoder(name: str) -> Callable[[Callable[..., AudioEncoder]], Callable[..., AudioEncoder]]:
    """Class decorator that makes an encoder available to ``build_encoder(name)``."""
    return _ENCODERS.register(name)


def list_encoders() -> list[str]:
    """Names accepted by ``build_encoder`` (and by ``audio.encoder`` in params.yaml)."""
    return _ENCODERS.names()


def build_encoder(name: str, **cfg: Any) -> AudioEncoder:
    """Instantiate the encoder registered as ``name`` with keyword configuration ``cfg``
    (``pipeline.registry.UnknownNameError`` for an unknown name; an argument the encoder does not take
    is an ``AudioEncoderError`` naming it)."""
    builder = _ENCODERS.lookup(name)
    unknown = sorted(set(cfg) - set(encoder_arguments(name)))
    if unknown:
        raise AudioEncoderError(
            f"audio encoder {name!r} takes no {', '.join(unknown)} (it takes {', '.join(encoder_arguments(name))})"
        )
    return builder(**cfg)


def describe_encoder(name: str, **cfg: Any) -> dict[str, str] | None:
    """The ``provenance`` that ``build_encoder(name, **cfg)`` would give, when the encoder can tell without
    being built (its ``describe``); None when it cannot (then build it to know)."""
    builder = _ENCODERS.lookup(name)
    describe = getattr(builder, "describe", None)
    return None if describe is None else describe(**cfg)


def encoder_arguments(name: str) -> list[str]:
    """The keyword arguments the encoder registered as ``name`` takes."""
    return [p for p in inspect.signature(_ENCODERS.lookup(name)).parameters if p != "self"]
