"""VGGish inside COMBO (frozen, on cached log-mel examples).

The network itself lives in ``pipeline.audio.vggish`` (one implementation for the feature stage
and the model: the released port's ``features.*`` / ``embeddings.*`` layout, channels-last
flattening, last ReLU kept); this module only adds COMBO's "no checkpoint -> random init" option.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.audio.vggish import EMBEDDING_DIM as VGGISH_EMBEDDING_DIM
from pipeline.audio.vggish import VGGish, random_init_vggish
from pipeline.audio.vggish import load_vggish as _load_released


def load_vggish(path: str | Path | None = None) -> VGGish:
    """VGGish with the released port's weights from ``path`` (strict load), or a seeded random init if None.

    Raises ``AudioEncoderError`` naming the file when it is missing or not in the released layout.
    """
    return random_init_vggish() if path is None else _load_released(Path(path))


__all__ = ["VGGISH_EMBEDDING_DIM", "VGGish", "load_vggish"]
