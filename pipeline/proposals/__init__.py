"""Class-agnostic proposals (MobileSAM / SAM / Semantic-SAM backends) and COMBO's maskige encoding.

Importing the package imports no torch (``avs proposals`` on COMBO's maskige trees runs no model):
:class:`FastMaskGenerator` is imported on first access, the models when a backend is built.
"""

from __future__ import annotations

from typing import Any

from pipeline.proposals.backends import Proposals, build_backend, list_backends, register_backend
from pipeline.proposals.cache import ProposalCache, VideoProposals, cached_propose_video, propose_video
from pipeline.proposals.config import PRESETS, ProposalParams
from pipeline.proposals.generator_settings import GeneratorSettings
from pipeline.proposals.maskige import (
    MAX_LABELS,
    apply_colour_matrix,
    colour_matrix,
    encode_maskige,
    exclusive_masks,
    label_map,
)

__all__ = [
    "MAX_LABELS",
    "PRESETS",
    "FastMaskGenerator",
    "GeneratorSettings",
    "ProposalCache",
    "ProposalParams",
    "Proposals",
    "VideoProposals",
    "apply_colour_matrix",
    "build_backend",
    "cached_propose_video",
    "colour_matrix",
    "encode_maskige",
    "exclusive_masks",
    "label_map",
    "list_backends",
    "propose_video",
    "register_backend",
]


def __getattr__(name: str) -> Any:
    """``FastMaskGenerator`` on first access (it imports torch); other names as usual."""
    if name == "FastMaskGenerator":
        from pipeline.proposals.generator import FastMaskGenerator

        return FastMaskGenerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
