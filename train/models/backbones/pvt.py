"""PVT-v2 backbones."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from train.models.backbones.registry import STAGE_NAMES, register_backbone

# PVT-v2 (Wang et al., "PVT v2: Improved baselines with Pyramid Vision Transformer").
# Parameter names follow the official release so its ImageNet checkpoints load.


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample with probability ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: conv (kernel 7 stride 4 or kernel 3 stride 2) + LayerNorm.

    forward(x [N,C_in,H,W]) -> (tokens [N,h*w,C], h, w).
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class SpatialReductionAttention(nn.Module):
    """PVT attention: keys/values from a ``sr_ratio``-strided conv of the tokens (cost / sr^2).

    forward(x [N,h*w,C], h, w) -> [N,h*w,C].
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, length, dim = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(n, length, heads, dim // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(n, dim, h, w)).flatten(2).transpose(1, 2)
            reduced = self.norm(reduced)
        else:
            reduced = x
        k, v = self.kv(reduced).reshape(n, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class DepthwiseConv(nn.Module):
    """3x3 depthwise conv on tokens: [N,h*w,C] -> [N,h*w,C]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, _, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    """PVT-v2 feed-forward: Linear -> depthwise 3x3 conv -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class PVTBlock(nn.Module):
    """Pre-norm transformer block: x + SRA(LN(x)); x + ConvFFN(LN(x)). Shapes [N,h*w,C]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class PVTv2Backbone(nn.Module):
    """Pyramid Vision Transformer v2 with four stages at strides 4, 8, 16, 32.

    Official parameter layout: ``patch_embed{i}``, ``block{i}.{j}``, ``norm{i}`` for i = 1..4.
    forward(x [N,3,H,W]) -> res2..res5 with ``embed_dims`` channels.
    """

    def __init__(
        self,
        embed_dims: tuple[int, int, int, int] = (64, 128, 320, 512),
        num_heads: tuple[int, int, int, int] = (1, 2, 5, 8),
        mlp_ratios: tuple[float, float, float, float] = (4, 4, 4, 4),
        depths: tuple[int, int, int, int] = (3, 6, 40, 3),
        sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1),
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear stochastic depth
        cursor = 0
        in_channels = 3
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(in_channels, embed_dims[i], patch, stride))
            blocks = [
                PVTBlock(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], rates[cursor + j])
                for j in range(depths[i])
            ]
            setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            cursor += depths[i]
            in_channels = embed_dims[i]
        self.out_channels = dict(zip(STAGE_NAMES, embed_dims))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        n = x.shape[0]
        for i, name in enumerate(STAGE_NAMES, start=1):
            tokens, h, w = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                tokens = block(tokens, h, w)
            tokens = getattr(self, f"norm{i}")(tokens)
            x = tokens.transpose(1, 2).reshape(n, -1, h, w)
            out[name] = x
        return out


@register_backbone("pvt_v2_b5")
def pvt_v2_b5(drop_path_rate: float = 0.1) -> PVTv2Backbone:
    """PVT-v2-B5 (paper backbone): dims 64/128/320/512, depths 3/6/40/3, mlp ratio 4."""
    return PVTv2Backbone(depths=(3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4), drop_path_rate=drop_path_rate)


@register_backbone("pvt_v2_b0")
def pvt_v2_b0(drop_path_rate: float = 0.0) -> PVTv2Backbone:
    """PVT-v2-B0 (dims 32/64/160/256, depths 2/2/2/2), a small PVT for quick experiments."""
    return PVTv2Backbone(
        embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), mlp_ratios=(8, 8, 4, 4), drop_path_rate=drop_path_rate
    )
