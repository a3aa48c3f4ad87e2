"""MaskDINO-style multi-scale deformable encoder ("pixel decoder"), ``sem_seg_head.pixel_decoder``.

Mirrors the official ``MaskDINOEncoder`` (``encoder_deform.py``) with feature order "low2high":
levels res3, res4, res5 and one stride-2 3x3 conv on res5 go through 1x1/3x3 conv + GroupNorm(32)
projections, sine position + level embeddings, then post-norm deformable self-attention layers;
one FPN step brings res2 in, and a 1x1 conv gives the mask features (stride 4). Runs in float32
even under autocast, as the official code does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.nn.ms_deform_attn import MSDeformAttn


def sine_position_embedding(x: torch.Tensor, num_pos_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """Normalised 2-D sine embedding of a map x [B,C,H,W] (only its shape is used) -> [B, 2*num_pos_feats, H, W]."""
    b, _, h, w = x.shape
    ones = torch.ones((b, h, w), device=x.device, dtype=x.dtype)
    y_embed, x_embed = ones.cumsum(1), ones.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=x.dtype, device=x.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x, pos_y = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes):
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class MSDeformAttnTransformerEncoder(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @staticmethod
    def reference_points(spatial_shapes, device) -> torch.Tensor:
        """Pixel centres of every level, normalised: [1, S, L, 2] (no padding masks: valid ratio 1)."""
        refs = []
        for h, w in spatial_shapes:
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            refs.append(torch.stack((ref_x.reshape(-1)[None] / w, ref_y.reshape(-1)[None] / h), -1))
        return torch.cat(refs, 1)[:, :, None].expand(-1, -1, len(spatial_shapes), -1)

    def forward(self, src, spatial_shapes, pos):
        ref = self.reference_points(spatial_shapes, src.device)
        for layer in self.layers:
            src = layer(src, pos, ref, spatial_shapes)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    def __init__(self, d_model: int, nhead: int, num_layers: int, d_ffn: int, n_levels: int, n_points: int) -> None:
        super().__init__()
        self.encoder = MSDeformAttnTransformerEncoder(
            [MSDeformAttnTransformerEncoderLayer(d_model, d_ffn, n_levels, nhead, n_points) for _ in range(num_layers)]
        )
        self.level_embed = nn.Parameter(torch.zeros(n_levels, d_model))

    def forward(self, srcs: list[torch.Tensor], pos_embeds: list[torch.Tensor]):
        """srcs/pos_embeds [B,C,H_l,W_l] -> (memory [B,S,C], [(H_l, W_l)])."""
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1) for i, p in enumerate(pos_embeds)], 1
        )
        return self.encoder(flat, shapes, pos), shapes


class Conv2dNorm(nn.Conv2d):
    """detectron2's Conv2d with a norm (keys ``weight`` and ``norm.*``) and an optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int, relu: bool = False) -> None:
        super().__init__(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.GroupNorm(32, cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class MaskDINOEncoder(nn.Module):
    """backbone features {"res2".."res5"} -> (mask_features [B,mask_dim,H/4,W/4], multi-scale list of 4 maps).

    The multi-scale list is ordered stride 8, 16, 32, 64.
    """

    def __init__(
        self,
        in_channels: list[int],
        conv_dim: int,
        mask_dim: int,
        nheads: int,
        d_ffn: int,
        enc_layers: int,
        total_levels: int,
        n_points: int,
    ) -> None:
        super().__init__()
        self.conv_dim = conv_dim
        c2, c3, c4, c5 = in_channels
        projs = [nn.Sequential(nn.Conv2d(c, conv_dim, 1), nn.GroupNorm(32, conv_dim)) for c in (c3, c4, c5)]
        cin = c5
        for _ in range(total_levels - 3):
            projs.append(nn.Sequential(nn.Conv2d(cin, conv_dim, 3, stride=2, padding=1), nn.GroupNorm(32, conv_dim)))
            cin = conv_dim
        self.input_proj = nn.ModuleList(projs)
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            conv_dim, nheads, enc_layers, d_ffn, total_levels, n_points
        )
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        self.adapter_1 = Conv2dNorm(c2, conv_dim, 1)
        self.layer_1 = Conv2dNorm(conv_dim, conv_dim, 3, relu=True)

    @torch.autocast("cuda", enabled=False)
    def forward_features(self, features: dict[str, torch.Tensor]):
        npf = self.conv_dim // 2
        srcs, pos = [], []
        for idx, name in enumerate(("res3", "res4", "res5")):
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(sine_position_embedding(x, npf))
        extra = features["res5"].float()
        for proj in self.input_proj[3:]:
            extra = proj(extra)
            srcs.append(extra)
            pos.append(sine_position_embedding(extra, npf))
        memory, shapes = self.transformer(srcs, pos)
        b = memory.shape[0]
        sizes = [h * w for h, w in shapes]
        out = [z.transpose(1, 2).reshape(b, -1, h, w) for z, (h, w) in zip(memory.split(sizes, 1), shapes)]
        cur = self.adapter_1(features["res2"].float())
        fpn = self.layer_1(cur + F.interpolate(out[0], size=cur.shape[-2:], mode="bilinear", align_corners=False))
        return self.mask_features(fpn), out
