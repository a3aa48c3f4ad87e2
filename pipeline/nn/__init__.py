"""Neural-network layers shared by the data side (Semantic-SAM proposals) and the learning side (COMBO,
TransAVS); ``train/`` imports them from here because ``pipeline/`` never imports ``train/``."""

from __future__ import annotations

from pipeline.nn.ms_deform_attn import MSDeformAttn, ms_deform_attn_core

__all__ = ["MSDeformAttn", "ms_deform_attn_core"]
