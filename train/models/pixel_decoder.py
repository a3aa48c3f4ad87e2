"""Multi-scale deformable-attention pixel decoder (Mask2Former's MSDeformAttn pixel decoder).

COMBO (paper Sec. 3.2, "pixel decoder [46]") upsamples the Siam-Encoder features F_v1..F_v4 into
per-pixel embeddings P_1..P_4; P_2..P_4 (1/8, 1/16, 1/32) feed the transformer decoder and P_1
(1/4) is the mask-feature map fused with audio in the BFM.

Multi-scale deformable attention (Zhu et al., Deformable DETR, eq. 3) is implemented in pure
PyTorch with ``F.grid_sample``; no compiled kernel is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from train.models.position_encoding import PositionEmbeddingSine


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of ``channels`` below 32 for small widths."""
    groups = math.gcd(channels, max_groups)
    return nn.GroupNorm(groups, channels)


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention sampling (Deformable DETR eq. 3), pure PyTorch.

    Args:
        value: [N, S, M, D] values of all levels flattened (S = sum_l H_l*W_l, M heads, D per head).
        spatial_shapes: [(H_l, W_l)] for the L levels, in the order they are flattened in ``value``.
        sampling_locations: [N, Lq, M, L, P, 2] (x, y) in [0, 1] of the image of each level
            (0 = left/top border, 1 = right/bottom border; outside samples read zeros).
        attention_weights: [N, Lq, M, L, P] (softmax-normalised over L*P).

    Returns:
        [N, Lq, M*D]: sum over levels and points of weight * bilinear sample.
    """
    n, _, heads, head_dim = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    value_per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample expects [-1, 1]
    samples = []
    for level, (h, w) in enumerate(spatial_shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        value_l = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * heads, head_dim, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N*M, D, Lq, L*P]
    stacked = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, num_queries, levels * points)
    out = (stacked * weights).sum(-1).view(n, heads * head_dim, num_queries)
    return out.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable DETR).

    Each query predicts ``num_points`` sampling offsets per head and level around its reference
    point, and attention weights normalised jointly over levels and points.

    forward(query [N,Lq,C], reference_points [N,Lq,L,2] (x,y in [0,1]), value_input [N,S,C],
    spatial_shapes [(H_l,W_l)]) -> [N,Lq,C].
    """

    def __init__(self, d_model: int = 256, num_levels: int = 3, num_heads: int = 8, num_points: int = 4) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.d_model, self.num_levels, self.num_heads, self.num_points = d_model, num_levels, num_heads, num_points
        self.sampling_offsets = nn.Linear(d_model, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(d_model, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Offsets start on a ring around the reference point, one direction per head, farther for
        # later points (Deformable DETR initialisation).
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.num_heads, 1, 1, 2)
        grid = grid.repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def sampling(
        self, query: torch.Tensor, reference_points: torch.Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling locations [N,Lq,M,L,P,2] and attention weights [N,Lq,M,L,P] for ``query``."""
        n, num_queries, _ = query.shape
        m, lv, p = self.num_heads, self.num_levels, self.num_points
        offsets = self.sampling_offsets(query).view(n, num_queries, m, lv, p, 2)
        weights = self.attention_weights(query).view(n, num_queries, m, lv * p).softmax(-1)
        weights = weights.view(n, num_queries, m, lv, p)
        # offsets are in pixels of each level -> normalise by (W_l, H_l)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return locations, weights

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        if len(spatial_shapes) != self.num_levels:
            raise ValueError(f"MSDeformAttn built for {self.num_levels} levels, got {len(spatial_shapes)}")
        n, length, _ = value_input.shape
        value = self.value_proj(value_input).view(n, length, self.num_heads, self.d_model // self.num_heads)
        locations, weights = self.sampling(query, reference_points, spatial_shapes)
        out = ms_deform_attn_core(value, spatial_shapes, locations.to(value.dtype), weights.to(value.dtype))
        return self.output_proj(out)


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
        self.self_attn = MSDeformAttn(d_model, num_levels, num_heads, num_points)
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
    "MSDeformAttn",
    "MSDeformAttnPixelDecoder",
    "group_norm",
    "ms_deform_attn_core",
]
