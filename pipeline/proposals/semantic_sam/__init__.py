"""Semantic-SAM (SwinL many2many) in pure PyTorch: no detectron2, no compiled ops.

``build_semantic_sam(checkpoint)`` loads the official ``swinl_only_sam_many2many.pth`` key for key;
``SemanticSamAutomaticMaskGenerator`` reproduces the official automatic mask generator.
"""

from pipeline.proposals.generator_settings import LEVEL_TO_TOKEN, SemanticSamGeneratorSettings
from pipeline.proposals.semantic_sam.config import SWINL, TINY, SemanticSamConfig
from pipeline.proposals.semantic_sam.generator import SemanticSamAutomaticMaskGenerator
from pipeline.proposals.semantic_sam.model import (
    SKIPPED_KEYS,
    LoadReport,
    SemanticSam,
    build_semantic_sam,
    checkpoint_state_dict,
    load_semantic_sam_state,
)

__all__ = [
    "LEVEL_TO_TOKEN",
    "SKIPPED_KEYS",
    "SWINL",
    "TINY",
    "LoadReport",
    "SemanticSam",
    "SemanticSamAutomaticMaskGenerator",
    "SemanticSamConfig",
    "SemanticSamGeneratorSettings",
    "build_semantic_sam",
    "checkpoint_state_dict",
    "load_semantic_sam_state",
]
