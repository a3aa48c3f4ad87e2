"""COMBO's Bilateral-Fusion Module (paper Sec. 3.2) and the official query/audio pairing.

Both follow the official code (yannqi/COMBO-AVS); options keep the paper's reading. The
differences are listed in docs/models.md with the official file and line.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from train.models.position_encoding import PositionEmbeddingSine


class BilateralFusion(nn.Module):
    """Bilateral-Fusion Module (paper Sec. 3.2, eq. 4-5, Fig. 3), as the official code computes it.

    P_1 <- P_1 + level_embed; v = LN(P_1), a = LN(F_a);
    Q = (v + pos_sine) W_Q, K = (a + pos_learned) W_K, V_v = v W_V^v, V_a = a W_V^a;
    A = clamp(QK^T / sqrt(d), +-50000) is computed once per head and used in both directions:
        P_1 <- v + gamma_v * W_o^v(softmax_pixels(A) V_a)
        F_a <- a + gamma_a * W_o^a(softmax_pixels(A)^T V_v)
    The official code (models/modeling/fusion_module/utils/fuse_helper.py) normalises both
    directions over the PIXELS (line 203, ``softmax(attn_weights, dim=1)``, and line 202), adds the
    residual to the normalised features (lines 330-331), drops attention weights with p = 0.1 in
    training (lines 204-205) and adds a learned ``level_embed`` first (AVFuse.py:104-106).
    ``official=False`` keeps the paper's reading of eq. 4: each pixel's softmax over the audio
    tokens and the residual on the raw features (level_embed unused).

    Args:
        visual_dim: channels C of P_1 (256). audio_dim: D of F_a (128).
        embed_dim: attention width d (256 = 8 heads x 32). num_heads: 8.
        max_audio_tokens: audio tokens per frame (1: one embedding per frame).

    forward(visual [N,C,H,W], audio [N,L,D], return_attention=False) ->
        (visual [N,C,H,W], audio [N,L,D]) or, with return_attention, a third element
        {"logits": [N,M,H*W,L], "visual_attention": [N,M,H*W,L], "audio_attention": [N,M,L,H*W]}.
    """

    def __init__(
        self,
        visual_dim: int = 256,
        audio_dim: int = 128,
        embed_dim: int = 256,
        num_heads: int = 8,
        layer_scale_init: float = 1e-4,
        max_audio_tokens: int = 1,
        dropout: float = 0.1,
        official: bool = True,
        position_offset: float = 0.0,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.official = official
        self.visual_norm = nn.LayerNorm(visual_dim)
        self.audio_norm = nn.LayerNorm(audio_dim)
        self.visual_position = PositionEmbeddingSine(visual_dim // 2, offset=position_offset)
        self.level_embed = nn.Parameter(torch.randn(1, visual_dim))  # nn.Embedding(1, C) init
        self.audio_pos_embed = nn.Parameter(torch.zeros(max_audio_tokens, audio_dim))
        nn.init.trunc_normal_(self.audio_pos_embed, std=0.02)
        self.query_proj = nn.Linear(visual_dim, embed_dim)
        self.key_proj = nn.Linear(audio_dim, embed_dim)
        self.visual_value_proj = nn.Linear(visual_dim, embed_dim)
        self.audio_value_proj = nn.Linear(audio_dim, embed_dim)
        self.visual_out_proj = nn.Linear(embed_dim, visual_dim)
        self.audio_out_proj = nn.Linear(embed_dim, audio_dim)
        self.dropout = nn.Dropout(dropout)
        self.visual_gamma = nn.Parameter(torch.full((visual_dim,), layer_scale_init))
        self.audio_gamma = nn.Parameter(torch.full((audio_dim,), layer_scale_init))
        for layer in (
            self.query_proj,
            self.key_proj,
            self.visual_value_proj,
            self.audio_value_proj,
            self.visual_out_proj,
            self.audio_out_proj,
        ):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.num_heads, self.head_dim).transpose(1, 2)  # [N,M,len,d]

    def attention(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Visual- and audio-direction weights from the logits [N,M,HW,L]:
        ([N,M,HW,L], [N,M,L,HW]). Official: both over the pixels; paper: visual over audio tokens."""
        audio_attention = logits.transpose(-1, -2).softmax(-1)  # each audio token over the pixels
        if self.official:
            return logits.softmax(-2), audio_attention  # fuse_helper.py:203, dim=1 = the pixels
        return logits.softmax(-1), audio_attention

    def residual_bases(
        self, pixels: torch.Tensor, pixels_normed: torch.Tensor, audio: torch.Tensor, audio_normed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the updates are added to: the official block adds them to the NORMALISED features
        (fuse_helper.py:330-331), the paper's reading to the raw ones."""
        return (pixels_normed, audio_normed) if self.official else (pixels, audio)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, return_attention: bool = False):
        n, channels, h, w = visual.shape
        if audio.shape[1] > self.audio_pos_embed.shape[0]:
            raise ValueError(f"BFM built for {self.audio_pos_embed.shape[0]} audio tokens, got {audio.shape[1]}")
        if self.official:
            visual = visual + self.level_embed[0].view(1, -1, 1, 1).to(visual.dtype)
        pixels = visual.flatten(2).transpose(1, 2)  # [N,HW,C]
        pixel_pos = self.visual_position(visual).flatten(2).transpose(1, 2)
        pixels_normed = self.visual_norm(pixels)
        audio_normed = self.audio_norm(audio)
        audio_pos = self.audio_pos_embed[: audio.shape[1]].unsqueeze(0).to(audio.dtype)

        query = self._heads(self.query_proj(pixels_normed + pixel_pos))  # [N,M,HW,d]
        key = self._heads(self.key_proj(audio_normed + audio_pos))  # [N,M,L,d]
        visual_value = self._heads(self.visual_value_proj(pixels_normed))  # [N,M,HW,d]
        audio_value = self._heads(self.audio_value_proj(audio_normed))  # [N,M,L,d]

        logits = (query @ key.transpose(-1, -2)).float() / math.sqrt(self.head_dim)  # [N,M,HW,L], once
        logits = logits.clamp(-50000.0, 50000.0)  # fuse_helper.py:190-193 (fp16 range)
        visual_attention, audio_attention = self.attention(logits)
        to_visual = self.dropout(visual_attention).to(audio_value.dtype) @ audio_value  # [N,M,HW,d]
        to_audio = self.dropout(audio_attention).to(visual_value.dtype) @ visual_value  # [N,M,L,d]
        to_visual = to_visual.transpose(1, 2).flatten(2)
        to_audio = to_audio.transpose(1, 2).flatten(2)

        pixels_base, audio_base = self.residual_bases(pixels, pixels_normed, audio, audio_normed)
        pixels = pixels_base + self.visual_gamma * self.visual_out_proj(to_visual)
        audio = audio_base + self.audio_gamma * self.audio_out_proj(to_audio)
        fused_visual = pixels.transpose(1, 2).reshape(n, channels, h, w)
        if return_attention:
            return (
                fused_visual,
                audio,
                {"logits": logits, "visual_attention": visual_attention, "audio_attention": audio_attention},
            )
        return fused_visual, audio


def official_query_audio(audio: torch.Tensor, num_queries: int) -> torch.Tensor:
    """The audio each query receives in the official decoder: [N,1,C] -> [N,Q,C].

    The official code (models/modeling/transformer_decoder/transformer_decoder.py:437) repeats the
    audio to [N,Q,C] and reshapes it to [Q,N,C] without a transpose, so query q of frame n gets
    the audio of frame (q*N + n) // Q of the batch: most queries receive another frame's (or, in a
    batch of several clips, another video's) audio. The published checkpoints learned with it.
    """
    n = audio.shape[0]
    rows = torch.arange(n, device=audio.device)[:, None] + torch.arange(num_queries, device=audio.device)[None] * n
    return audio[:, 0][rows // num_queries]


__all__ = ["BilateralFusion", "official_query_audio"]
