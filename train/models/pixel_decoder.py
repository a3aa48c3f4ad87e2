"""Multi-scale deformable-attention pixel decoder (Mask2Former's MSDeformAttn pixel decoder).

COMBO (paper Sec. 3.2, "pixel decoder [46]") upsamples the Siam-Encoder features F_v1..F_v4 into
per-pixel embeddings P_1..P_4; P_2..P_4 (1/8, 1/16, 1/32) feed the transformer decoder and P_1
(1/4) is the mask-feature map fused with audio in the BFM.

Multi-scale deformable attention (Zhu et al., Deformable DETR, eq. 3) is ``pipeline.nn.MSDeformAttn``,
the pure-PyTorch module Semantic-SAM's port uses too; no compiled kernel is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.nn.ms_deform_attn import MSDeformAttn
from train.models.position_encoding import PositionEmbeddingSine


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of ``channels`` below 32 for small widths."""
    groups = math.gcd(channels, max_groups)
    return nn.GroupNorm(groups, channels)


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: MSDeformAttn self-attention over all levels, then FFN.

    forward(src [N,S,C], pos [N,S,C], reference_points [N,S,L,2], spatial_shapes) -> [N,S,C].
    """

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.0,
        num_levels: int = 3,
        num_heads: int = 8,
        num_points: int = 4,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels=num_levels, n_heads=num_heads, n_points=num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = nn.ReLU(inplace=True)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


def encoder_reference_points(
    spatial_shapes: list[tuple[int, int]], num_levels: int, batch: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0,1]: [N, S, L, 2] (x, y), same for every level
    because inputs are never padded (valid ratio 1)."""
    points = []
    for h, w in spatial_shapes:
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=device, dtype=dtype) + 0.5) / h,
            (torch.arange(w, device=device, dtype=dtype) + 0.5) / w,
            indexing="ij",
        )
        points.append(torch.stack((xs.flatten(), ys.flatten()), -1))
    reference = torch.cat(points, 0)  # [S, 2]
    return reference[None, :, None, :].expand(batch, -1, num_levels, -1)


class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former pixel decoder: deformable-attention encoder over res3..res5, FPN step to res2.

    Args:
        in_channels: channels of the backbone stages, keys "res2".."res5".
        hidden_dim: width C of all outputs (256 in the paper config).
        num_layers: deformable encoder layers (6 in the paper config).
        mask_dim: channels of ``mask_features`` (defaults to ``hidden_dim``).
        num_heads, num_points, ffn_dim, dropout: MSDeformAttn encoder settings (8, 4, 1024, 0.0).
        position_offset: ``PositionEmbeddingSine`` offset (0.0 in Mask2Former / official COMBO).

    forward(features: dict res2..res5 [N,C_i,H/2^(i),W/2^(i)]) ->
        (mask_features [N,mask_dim,H/4,W/4],
         multi_scale: list of 3 tensors [N,C,h,w] at 1/32, 1/16, 1/8)
    """

    transformer_in_features: tuple[str, ...] = ("res5", "res4", "res3")

    def __init__(
        self,
        in_channels: dict[str, int],
        hidden_dim: int = 256,
        num_layers: int = 6,
        mask_dim: int | None = None,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        position_offset: float = 0.5,
    ) -> None:
        super().__init__()
        missing = [k for k in ("res2", *self.transformer_in_features) if k not in in_channels]
        if missing:
            raise ValueError(f"MSDeformAttnPixelDecoder needs in_channels for {missing}")
        num_levels = len(self.transformer_in_features)
        self.num_levels = num_levels
        self.hidden_dim = hidden_dim
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[name], hidden_dim, kernel_size=1), group_norm(hidden_dim))
            for name in self.transformer_in_features
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.position_encoding = PositionEmbeddingSine(hidden_dim // 2, offset=position_offset)
        self.level_embed = nn.Parameter(torch.empty(num_levels, hidden_dim).normal_())
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(hidden_dim, ffn_dim, dropout, num_levels, num_heads, num_points)
            for _ in range(num_layers)
        )
        mask_dim = hidden_dim if mask_dim is None else mask_dim
        self.mask_features = nn.Conv2d(hidden_dim, mask_dim, kernel_size=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)
        self.lateral_conv = nn.Sequential(
            nn.Conv2d(in_channels["res2"], hidden_dim, 1, bias=False), group_norm(hidden_dim)
        )
        self.output_conv = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, bias=False), group_norm(hidden_dim), nn.ReLU(inplace=True)
        )
        for conv in (self.lateral_conv[0], self.output_conv[0]):
            nn.init.kaiming_uniform_(conv.weight, a=1)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        sources, positions, shapes = [], [], []
        for level, name in enumerate(self.transformer_in_features):
            src = self.input_proj[level](features[name])  # [N,C,h,w]
            pos = self.position_encoding(src) + self.level_embed[level].view(1, -1, 1, 1).to(src.dtype)
            shapes.append((src.shape[-2], src.shape[-1]))
            sources.append(src.flatten(2).transpose(1, 2))
            positions.append(pos.flatten(2).transpose(1, 2))
        memory = torch.cat(sources, 1)  # [N,S,C]
        pos = torch.cat(positions, 1)
        n = memory.shape[0]
        reference = encoder_reference_points(shapes, self.num_levels, n, memory.device, memory.dtype)
        for layer in self.layers:
            memory = layer(memory, pos, reference, shapes)
        multi_scale = [
            level.transpose(1, 2).reshape(n, self.hidden_dim, h, w)
            for level, (h, w) in zip(memory.split([h * w for h, w in shapes], 1), shapes)
        ]  # 1/32, 1/16, 1/8
        lateral = self.lateral_conv(features["res2"])
        top_down = F.interpolate(multi_scale[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        finest = self.output_conv(lateral + top_down)  # [N,C,H/4,W/4]
        return self.mask_features(finest), multi_scale


__all__ = [
    "DeformableEncoderLayer",
    "MSDeformAttnPixelDecoder",
    "group_norm",
]
