"""Architecture hyper-parameters of Semantic-SAM (``configs/semantic_sam_only_sa-1b_swinL.yaml``).

``SWINL`` is the released many2many model (``swinl_only_sam_many2many.pth``); ``TINY`` keeps every
code path (4 Swin stages, 3 + 1 encoder levels, one FPN level, 6 mask tokens, shifted windows with
padding) at a width that fits a test fixture.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SemanticSamConfig:
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    conv_dim: int = 256  # encoder width (ENCODER.CONVS_DIM), also the decoder's hidden dim
    mask_dim: int = 256
    enc_layers: int = 6
    dec_layers: int = 9
    nheads: int = 8
    dim_feedforward: int = 2048
    n_points: int = 4
    num_mask_tokens: int = 6  # DECODER.NUM_INTERACTIVE_TOKENS
    total_levels: int = 4  # res3, res4, res5 + one stride-2 conv on res5
    size_divisibility: int = 32

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, mapping: dict) -> SemanticSamConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()})


SWINL = SemanticSamConfig()
TINY = SemanticSamConfig(
    embed_dim=16,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 4, 8),
    window_size=12,
    conv_dim=64,
    mask_dim=64,
    enc_layers=2,
    dec_layers=3,
    dim_feedforward=128,
)

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
