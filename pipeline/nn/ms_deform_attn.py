"""Multi-scale deformable attention (Zhu et al., Deformable DETR, eq. 3) in pure PyTorch.

The one ``MSDeformAttn`` of the project, used by Semantic-SAM's encoder and decoder
(``pipeline/proposals/semantic_sam/``) and by the COMBO / TransAVS pixel decoder
(``train/models/pixel_decoder.py``). Deformable DETR, Mask2Former and Semantic-SAM ship a CUDA kernel
for the sampling and fall back to a ``grid_sample`` formulation without it; this module is that
formulation only, so it runs on any device and dtype without a compiled op. Argument names
(``d_model, n_levels, n_heads, n_points``) and parameter names (``sampling_offsets``,
``attention_weights``, ``value_proj``, ``output_proj``) are the official ones, so the official
checkpoints of both users load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted bilinear samples of every level (Deformable DETR eq. 3 without the projections).

    Args:
        value: [N, S, M, D] values of all levels flattened (S = sum_l H_l*W_l, M heads, D channels per head).
        spatial_shapes: [(H_l, W_l)] of the L levels, in the order they are flattened in ``value``.
        sampling_locations: [N, Q, M, L, P, 2] (x, y) in [0, 1] of each level's image (0 = left/top
            border, 1 = right/bottom border, pixel centres at (i + 0.5) / W; outside samples read zeros).
        attention_weights: [N, Q, M, L, P].

    Returns:
        [N, Q, M*D]: the sum over levels and points of weight * bilinear sample.
    """
    n, _, heads, head_dim = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] with align_corners=False
    value_per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, num_queries, levels, points)
    out = None
    for level, (h, w) in enumerate(spatial_shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        value_l = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * heads, head_dim, h, w)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # [N*M, Q, P, 2]
        sampled = F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        # weighted sum over the points, level by level: no [N*M, D, Q, L*P] stack of every sample in memory
        part = torch.einsum("bdqp,bqp->bdq", sampled, weights[:, :, level])
        out = part if out is None else out + part
    return out.reshape(n, heads * head_dim, num_queries).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable attention of Q queries over ``n_levels`` flattened feature maps.

    Each query predicts ``n_points`` sampling offsets per head and level around its reference point,
    and attention weights normalised jointly over levels and points (softmax over L*P).

    forward(query [N,Q,C], reference_points [N,Q,L,2] (x, y) or [N,Q,L,4] (cx, cy, w, h), in [0, 1],
    input_flatten [N,S,C], spatial_shapes [(H_l, W_l)] * L, padding_mask [N,S] bool (True = padding)
    or None) -> [N,Q,C]. With 2-d reference points the offsets are in pixels of each level; with
    reference boxes they are scaled by half the box size / n_points (as in the official code).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttn: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on a ring around the reference point, one
        direction per head and farther for later points; uniform attention weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        ring = torch.stack([thetas.cos(), thetas.sin()], -1)
        ring = (ring / ring.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        ring = ring.repeat(1, self.n_levels, self.n_points, 1)
        ring = ring * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(ring.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def sampling(
        self, query: torch.Tensor, reference_points: torch.Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling locations [N,Q,M,L,P,2] and attention weights [N,Q,M,L,P] of ``query``."""
        n, num_queries, _ = query.shape
        shape = (n, num_queries, self.n_heads, self.n_levels, self.n_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(n, num_queries, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(*shape)
        if reference_points.shape[-1] == 2:  # offsets in pixels of each level -> divide by (W_l, H_l)
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            centres, sizes = reference_points[:, :, None, :, None, :2], reference_points[:, :, None, :, None, 2:]
            locations = centres + offsets / self.n_points * sizes * 0.5
        else:
            raise ValueError(
                f"MSDeformAttn: reference_points must end in 2 or 4 values, got {reference_points.shape[-1]}"
            )
        return locations, weights

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, length, _ = input_flatten.shape
        if len(spatial_shapes) != self.n_levels:
            raise ValueError(f"MSDeformAttn built for {self.n_levels} levels, got {len(spatial_shapes)}")
        if sum(h * w for h, w in spatial_shapes) != length:
            raise ValueError(f"MSDeformAttn: spatial_shapes {list(spatial_shapes)} do not cover the {length} inputs")
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, length, self.n_heads, self.d_model // self.n_heads)
        locations, weights = self.sampling(query, reference_points, spatial_shapes)
        # under autocast the value is half precision while offsets/softmax are float32: sample in the value's dtype
        out = ms_deform_attn_core(value, spatial_shapes, locations.to(value.dtype), weights.to(value.dtype))
        return self.output_proj(out)


__all__ = ["MSDeformAttn", "ms_deform_attn_core"]
