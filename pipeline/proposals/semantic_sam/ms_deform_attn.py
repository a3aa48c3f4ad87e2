"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

Semantic-SAM ships a CUDA kernel for this op and falls back to a grid_sample formulation when the
kernel is missing; this module is that formulation only, so it runs on any device and dtype.
Parameter names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``)
match the official ``MSDeformAttn`` so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_sample(
    value: torch.Tensor, spatial_shapes: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted bilinear samples of every level.

    value [N, S, M, D] (S = sum of H_l*W_l, M heads, D channels per head);
    locations [N, Q, M, L, P, 2] in [0, 1] (x, y; outside samples read zeros);
    weights [N, Q, M, L, P] -> [N, Q, M*D].
    """
    n, _, m, d = value.shape
    _, q, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1  # grid_sample's [-1, 1] with align_corners=False
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    weights = weights.transpose(1, 2).reshape(n * m, q, levels, points)
    out = None
    for lvl, (h, w) in enumerate(spatial_shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [N*M, Q, P, 2]
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # [N*M, D, Q, P]
        # weighted sum over the points, level by level (no [.., L*P] stack of all samples)
        part = torch.einsum("bdqp,bqp->bdq", sampled, weights[:, :, lvl])
        out = part if out is None else out + part
    return out.reshape(n, m * d, q).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable attention over ``n_levels`` flattened feature maps.

    forward(query [N,Q,C], reference_points [N,Q,L,2|4] in [0,1], input_flatten [N,S,C],
    spatial_shapes [(H_l, W_l)], padding_mask [N,S] bool or None) -> [N,Q,C].
    With 4-d reference boxes (cx, cy, w, h) the offsets are scaled by half the box size / n_points.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, q, _ = query.shape
        s = input_flatten.shape[1]
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)
        shape = (n, q, self.n_heads, self.n_levels, self.n_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(n, q, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(*shape)
        if reference_points.shape[-1] == 2:
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(f"reference_points must end in 2 or 4 values, got {reference_points.shape[-1]}")
        out = ms_deform_attn_sample(value, spatial_shapes, locations, weights)
        return self.output_proj(out)


def naive_ms_deform_attn(
    value: torch.Tensor, spatial_shapes: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Loop-by-loop bilinear sampling (pixel centres at +0.5, zeros outside): a slow reference for tests.

    Same shapes as :func:`ms_deform_attn_sample`.
    """
    n, _, m, d = value.shape
    _, q, _, levels, points, _ = locations.shape
    out = value.new_zeros(n, q, m, d)
    start = 0
    for lvl, (h, w) in enumerate(spatial_shapes):
        v = value[:, start : start + h * w].view(n, h, w, m, d)
        start += h * w
        x = locations[..., lvl, :, 0] * w - 0.5  # [N,Q,M,P]
        y = locations[..., lvl, :, 1] * h - 0.5
        x0, y0 = x.floor(), y.floor()
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                wgt = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                xc, yc = xi.clamp(0, w - 1).long(), yi.clamp(0, h - 1).long()
                for b in range(n):
                    for head in range(m):
                        vals = v[b, yc[b, :, head], xc[b, :, head], head]  # [Q,P,D]
                        coef = (wgt * inside * weights[..., lvl, :])[b, :, head]  # [Q,P]
                        out[b, :, head] += (vals * coef[..., None]).sum(1)
    return out.reshape(n, q, m * d)
