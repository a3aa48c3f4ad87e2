"""Fixed sine positional encoding for 2-D feature maps (DETR / Mask2Former convention)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of normalised (y, x) pixel centres.

    Args:
        num_pos_feats: features per axis; the output has ``2 * num_pos_feats`` channels (y then x).
        temperature: frequency base.
        scale: coordinates are normalised to ``(0, scale]`` (``2*pi``).
        offset: subtracted from the 1-based pixel index before normalising: 0.5 (pixel centres,
            Deformable-DETR style) or 0.0 (Mask2Former's and the official COMBO code's
            ``cumsum / last``, models/modeling/transformer_decoder/position_encoding.py:37-38).

    forward(x [N,C,H,W]) -> pos [N, 2*num_pos_feats, H, W] (depends only on H, W, dtype, device).
    """

    def __init__(
        self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi, offset: float = 0.5
    ) -> None:
        super().__init__()
        self.offset = offset
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        eps = 1e-6
        y_embed = (torch.arange(1, h + 1, dtype=torch.float32, device=x.device) - self.offset) / (h + eps) * self.scale
        x_embed = (torch.arange(1, w + 1, dtype=torch.float32, device=x.device) - self.offset) / (w + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_y = y_embed[:, None] / dim_t  # [H, F]
        pos_x = x_embed[:, None] / dim_t  # [W, F]
        pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
        pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
        pos = torch.cat((pos_y[:, None, :].expand(h, w, -1), pos_x[None, :, :].expand(h, w, -1)), dim=2)  # [H, W, 2F]
        return pos.permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1).to(x.dtype)
