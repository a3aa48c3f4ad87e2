"""Mask2Former masked-attention transformer decoder (Cheng et al. 2022, Sec. 3.2).

Learnable queries attend, round-robin, to the 1/32, 1/16 and 1/8 pixel-decoder maps with
masked cross-attention (each query only sees pixels its previous mask prediction marks as
foreground), then self-attention and an FFN. After every layer (and once before the first) a
class head (num_classes + 1 "no object") and a mask head (query embedding . per-pixel embedding
P_1) produce predictions for deep supervision. COMBO (Sec. 3.2, "expanding fused audio features
F_a added with learnable embeddings ... as object queries") passes its audio embedding through
``query_add``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from train.models.position_encoding import PositionEmbeddingSine


class MLP(nn.Module):
    """Stack of Linear layers with ReLU between them (none after the last).

    ``MLP(in_dim, (h1, h2), out_dim)``: [..., in_dim] -> [..., out_dim].
    """

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] | list[int], out_dim: int) -> None:
        super().__init__()
        dims = [in_dim, *hidden_dims, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return x


class CrossAttentionLayer(nn.Module):
    """Post-norm masked cross-attention: tgt [N,Q,C] attends to memory [N,S,C].

    ``attn_mask`` [N*heads, Q, S] bool, True = not allowed.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        attn_mask: torch.Tensor | None,
        memory_pos: torch.Tensor,
        query_pos: torch.Tensor,
    ) -> torch.Tensor:
        out = self.attn(tgt + query_pos, memory + memory_pos, memory, attn_mask=attn_mask, need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among the queries: [N,Q,C] -> [N,Q,C]."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = tgt + query_pos
        out = self.attn(q, q, tgt, need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: [N,Q,C] -> [N,Q,C]."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class MaskedAttentionDecoder(nn.Module):
    """Mask2Former transformer decoder with class and mask heads.

    Args:
        num_classes: K object classes; the class head outputs K + 1 logits (last = no object).
        hidden_dim: query width C, also the width of the multi-scale maps (256 in the paper).
        num_queries: learnable queries (100).
        num_heads: attention heads (8).
        ffn_dim: FFN width (2048).
        num_layers: decoder layers (9 = L 3 rounds over the 3 scales).
        mask_dim: channels of the per-pixel embedding the mask head multiplies with (= C).
        num_levels: multi-scale maps attended round-robin (3).
        position_offset: ``PositionEmbeddingSine`` offset (0.0 in Mask2Former / official COMBO).

    forward(multi_scale: list of num_levels tensors [N,C,h_l,w_l] (1/32, 1/16, 1/8),
            mask_features [N,mask_dim,H4,W4], query_add: [N,Q or 1,C] | None) ->
        {"pred_logits": [N,Q,K+1], "pred_masks": [N,Q,H4,W4],
         "aux_outputs": list of num_layers dicts with the same keys (predictions before layer 1
         and after layers 1..num_layers-1, for deep supervision)}
    """

    def __init__(
        self,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        num_layers: int = 9,
        mask_dim: int | None = None,
        num_levels: int = 3,
        dropout: float = 0.0,
        position_offset: float = 0.5,
    ) -> None:
        super().__init__()
        mask_dim = hidden_dim if mask_dim is None else mask_dim
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.num_levels = num_levels
        self.position_encoding = PositionEmbeddingSine(hidden_dim // 2, offset=position_offset)
        self.cross_attention = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.self_attention = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.ffn = nn.ModuleList(FFNLayer(hidden_dim, ffn_dim, dropout) for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # content queries
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # positional part of the queries
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, (hidden_dim, hidden_dim), mask_dim)
        for layer in self.modules():
            if isinstance(layer, nn.MultiheadAttention):
                nn.init.xavier_uniform_(layer.in_proj_weight)

    def _predict(
        self, queries: torch.Tensor, mask_features: torch.Tensor, attn_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class logits [N,Q,K+1], mask logits [N,Q,H4,W4] and the next cross-attention mask
        [N*heads,Q,h*w] (True where sigmoid(mask) < 0.5 at the next level's resolution)."""
        decoded = self.decoder_norm(queries)
        class_logits = self.class_embed(decoded)
        mask_logits = torch.einsum("nqc,nchw->nqhw", self.mask_embed(decoded), mask_features)
        attn = F.interpolate(mask_logits, size=attn_size, mode="bilinear", align_corners=False)
        attn_mask = (attn.sigmoid().flatten(2) < 0.5).repeat_interleave(self.num_heads, dim=0).detach()
        return class_logits, mask_logits, attn_mask

    def forward(
        self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor, query_add: torch.Tensor | None = None
    ) -> dict:
        if len(multi_scale) != self.num_levels:
            raise ValueError(f"decoder expects {self.num_levels} feature levels, got {len(multi_scale)}")
        memories, memory_pos, sizes = [], [], []
        for level, feature in enumerate(multi_scale):
            sizes.append(tuple(feature.shape[-2:]))
            memory_pos.append(self.position_encoding(feature).flatten(2).transpose(1, 2))
            memories.append(feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level].to(feature.dtype))
        n = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(n, -1, -1)
        queries = self.query_feat.weight.unsqueeze(0).expand(n, -1, -1)
        if query_add is not None:
            queries = queries + query_add  # COMBO "add" audio queries (paper Table 6), [N,1|Q,C]

        predictions = []
        class_logits, mask_logits, attn_mask = self._predict(queries, mask_features, sizes[0])
        predictions.append((class_logits, mask_logits))
        for index in range(self.num_layers):
            level = index % self.num_levels
            # A query whose mask is empty everywhere would attend to nothing (NaN): let it see all.
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)
            queries = self.cross_attention[index](queries, memories[level], attn_mask, memory_pos[level], query_pos)
            queries = self.self_attention[index](queries, query_pos)
            queries = self.ffn[index](queries)
            next_size = sizes[(index + 1) % self.num_levels]
            class_logits, mask_logits, attn_mask = self._predict(queries, mask_features, next_size)
            predictions.append((class_logits, mask_logits))
        return {
            "pred_logits": predictions[-1][0],
            "pred_masks": predictions[-1][1],
            "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in predictions[:-1]],
        }


__all__ = ["MLP", "MaskedAttentionDecoder"]
