"""Semantic-SAM's interactive decoder (``sem_seg_head.predictor``, official ``IMaskDINODecoder``),
inference path for point prompts only.

Each point prompt becomes ``num_mask_tokens`` queries ``label_enc[0] + pb_embedding[0] + mask_tokens[k]``
with the anchor box (x, y, 0.005, 0.005); the queries go through post-norm deformable decoder layers
(self-attention over *all* queries of the call, no mask; deformable cross-attention over the 4
encoder levels, coarsest first) with a shared box-refinement MLP moving the anchors. The last
layer's output (normalised twice, as in the official code) gives mask logits (``mask_embed`` dot
mask features) and a raw IoU score per query.

Not built: the open-vocabulary class heads ``lang_mapper``, ``class_embed``, ``class_embed_part``
(multiplied by 0.0 in the official forward; see ``model.SKIPPED_KEYS``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.nn.ms_deform_attn import MSDeformAttn


class MLP(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def sine_embed_boxes(boxes: torch.Tensor, dim: int) -> torch.Tensor:
    """boxes [Q,B,4] (cx, cy, w, h in [0,1]) -> [Q,B,4*dim] in the order y, x, w, h."""
    dim_t = torch.arange(dim, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / dim)
    parts = []
    for i in (1, 0, 2, 3):
        p = boxes[:, :, i][:, :, None] * (2 * math.pi) / dim_t
        parts.append(torch.stack((p[:, :, 0::2].sin(), p[:, :, 1::2].cos()), dim=3).flatten(2))
    return torch.cat(parts, dim=2)


class DeformableTransformerDecoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, keep=None):
        """tgt/query_pos [Q,B,C]; reference_points [Q,B,L,4]; memory [S,B,C] -> [Q,B,C].

        ``keep`` (query indices): after self-attention (which needs every query), only these go on.
        """
        q = tgt + query_pos
        tgt = self.norm2(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])
        if keep is not None:
            tgt, query_pos, reference_points = tgt[keep], query_pos[keep], reference_points[keep]
        tgt2 = self.cross_attn(
            (tgt + query_pos).transpose(0, 1),
            reference_points.transpose(0, 1).contiguous(),
            memory.transpose(0, 1),
            spatial_shapes,
        ).transpose(0, 1)
        tgt = self.norm1(tgt + tgt2)
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class TransformerDecoder(nn.Module):
    """Layers + anchor refinement; ``norm`` and ``bbox_embed`` are the predictor's own modules (shared)."""

    def __init__(self, layers: list[nn.Module], norm: nn.LayerNorm, d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.bbox_embed: nn.ModuleList | None = None
        self.d_model = d_model

    def forward(self, tgt, memory, refpoints_unsigmoid, spatial_shapes, keep=None):
        """tgt [Q,B,C], memory [S,B,C], refpoints_unsigmoid [Q,B,4] -> normalised output of the last layer
        ([Q,B,C], or [len(keep),B,C]: the last layer computes only the queries in ``keep`` after its self-attention)."""
        output = tgt
        reference = refpoints_unsigmoid.sigmoid()
        levels = len(spatial_shapes)
        last = len(self.layers) - 1
        for layer_id, layer in enumerate(self.layers):
            ref_input = reference[:, :, None].expand(-1, -1, levels, -1)  # valid ratios are all 1
            query_pos = self.ref_point_head(sine_embed_boxes(reference, self.d_model // 2))
            output = layer(output, query_pos, ref_input, memory, spatial_shapes, keep if layer_id == last else None)
            if layer_id < last:  # the last refinement only feeds box outputs we do not use
                reference = (self.bbox_embed[layer_id](output) + inverse_sigmoid(reference)).sigmoid().detach()
        return self.norm(output)


class IMaskDINODecoder(nn.Module):
    def __init__(
        self,
        hidden_dim: int,
        mask_dim: int,
        nheads: int,
        d_ffn: int,
        dec_layers: int,
        n_levels: int,
        n_points: int,
        num_mask_tokens: int,
    ) -> None:
        super().__init__()
        self.num_mask_tokens = num_mask_tokens
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        layers = [
            DeformableTransformerDecoderLayer(hidden_dim, d_ffn, n_levels, nheads, n_points) for _ in range(dec_layers)
        ]
        self.decoder = TransformerDecoder(layers, self.decoder_norm, hidden_dim)
        self._bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.bbox_embed = nn.ModuleList([self._bbox_embed for _ in range(dec_layers)])
        self.decoder.bbox_embed = self.bbox_embed
        self.iou_prediction_head = MLP(hidden_dim, hidden_dim, 1, 3)
        self.mask_tokens = nn.Embedding(num_mask_tokens, hidden_dim)
        self.pb_embedding = nn.Embedding(2, hidden_dim)
        self.label_enc = nn.Embedding(2, hidden_dim)

    def queries(self, points: torch.Tensor):
        """points [B,N,4] (x, y, w, h in [0,1]) -> content [B,N*T,C] and anchors [B,N*T,4] (T tokens per point)."""
        b, n, _ = points.shape
        zeros = torch.zeros((b, n), dtype=torch.long, device=points.device)
        content = self.label_enc(zeros) + self.pb_embedding(zeros)
        content = content.repeat_interleave(self.num_mask_tokens, 1) + self.mask_tokens.weight.repeat(b, n, 1)
        anchors = inverse_sigmoid(points).repeat_interleave(self.num_mask_tokens, 1)
        return content, anchors

    @torch.autocast("cuda", enabled=False)
    def forward(
        self,
        multi_scale: list[torch.Tensor],
        mask_features: torch.Tensor,
        points: torch.Tensor,
        tokens: list[int] | None = None,
    ):
        """multi_scale: 4 maps [B,C,H_l,W_l] (stride 8..64); points [B,N,4].

        -> (mask logits [B, N*len(tokens), H/4, W/4], raw IoU scores [B, N*len(tokens)]), ordered point-major;
        ``tokens`` selects mask tokens (default: all).
        """
        levels = multi_scale[::-1]  # the official decoder reads the coarsest level first
        shapes = [tuple(x.shape[-2:]) for x in levels]
        memory = torch.cat([x.flatten(2).transpose(1, 2) for x in levels], 1).float()
        content, anchors = self.queries(points.float())
        keep = None
        if tokens is not None:  # queries are point-major: point n, token t is n*T + t
            base = torch.arange(points.shape[1], device=points.device)[:, None] * self.num_mask_tokens
            keep = (base + torch.as_tensor(tokens, device=points.device)[None]).reshape(-1)
        hs = self.decoder(content.transpose(0, 1), memory.transpose(0, 1), anchors.transpose(0, 1), shapes, keep)
        out = self.decoder_norm(hs.transpose(0, 1))  # [B, N*len(tokens), C]
        iou = self.iou_prediction_head(out).squeeze(-1)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(out), mask_features.to(out.dtype))
        return masks, iou
