"""segment-anything's ``MaskDecoder`` for many point prompts on one image, reorganised around
what the prompts share. Same weights, same maths (up to float rounding), far less work.

The released decoder treats every prompt as an independent image: it copies the image embedding
once per prompt ([B,N,C], N = 4096 tokens at a 1024 input), projects all N tokens with every
attention's q/k/v projections, and materialises [B,N,C] tensors a dozen times. On a CPU that
costs ~110-220 ms per prompt at a 1024 input, almost all of it memory traffic. Here:

1. Layer 1 sees the same image for every prompt (the dense prompt is ``no_mask_embed``), so its
   image-side projections (token->image keys/values, image->token queries) are computed once.
2. In the later attentions the image side is prompt-specific, but the other side has only T = 7
   tokens. Attention is bilinear, so the T-side projection is folded into the weights instead of
   projecting N image tokens: token->image logits = (q W_k) (X + pos)^T (the k bias is constant
   over the softmax axis and cancels) and values (P X) W_v^T; image->token logits =
   (X + pos) (W_q^T K) + b_q K, and the output projection is applied to the T value tokens
   before the attention weights (a [B,N,H*T] x [B,H*T,C] product).
3. Heads are handled with block-diagonal [H*T, D] operands, so every product is one batched
   GEMM and no [B,N,...] tensor is permuted.
4. The two transposed convolutions of the mask upscaling (kernel 2, stride 2: a per-pixel
   linear map) run as GEMMs with the sub-pixel layout resolved on the 3 output masks only, and
   only for the prompts the caller keeps.

``tests/pipeline/test_proposals_decoder.py`` checks every output against the released ``MaskDecoder``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _head_mask(num_heads: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """[H, D] with row h = 1 on head h's D/H channels."""
    d = dim // num_heads
    mask = torch.zeros(num_heads, dim, dtype=like.dtype, device=like.device)
    for h in range(num_heads):
        mask[h, h * d : (h + 1) * d] = 1
    return mask


def _block_diagonal(x: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """[B,T,D] -> [B,H*T,D]: row (h, t) keeps token t's channels of head h, zeros elsewhere."""
    b, t, d = x.shape
    return (x[:, None] * head_mask[None, :, None, :]).reshape(b, -1, d)


def _take_block_diagonal(x: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_block_diagonal`: [B,H*T,D] -> [B,T,D] (head h's channels from rows (h, .))."""
    b, ht, d = x.shape
    h = head_mask.shape[0]
    return (x.view(b, h, ht // h, d) * head_mask[None, :, None, :]).sum(1)


def _softmax_small_last(x: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last axis (the T = 7 prompt tokens), in place on ``x``.

    ``torch.softmax`` over a 7-wide axis of [B,N,H,7] runs at a fraction of memory speed (one
    short row at a time); these four elementwise passes are several times faster."""
    x -= x.amax(dim=-1, keepdim=True)
    x.exp_()
    x /= x.sum(dim=-1, keepdim=True)
    return x


class SharedImageDecoder(nn.Module):
    """Point-prompt decoding on one image embedding.

    Built from a ``MaskDecoder`` (segment-anything or MobileSAM: same structure), the image
    embedding [1,C,h,w], its positional encoding [1,C,h,w] and the dense prompt embedding
    (``no_mask_embed``, [1,C,h,w]). Then:

    - ``transformer(sparse)``: sparse prompt embeddings [B,S,C] -> (tokens [B,1+M+S,C], image
      tokens [B,N,C]), exactly ``MaskDecoder``'s two-way transformer outputs (M mask tokens).
    - ``iou(tokens)``: [B,M] predicted IoU of every mask token.
    - ``masks(tokens, image_tokens, which)``: low-resolution logits [B,len(which),4h,4w] of the
      mask tokens ``which`` (multimask output: 1, 2, 3).
    """

    def __init__(
        self, decoder: nn.Module, image_embedding: torch.Tensor, image_pe: torch.Tensor, dense_embedding: torch.Tensor
    ) -> None:
        super().__init__()
        self.decoder = decoder
        transformer = decoder.transformer
        first = transformer.layers[0]
        if not first.skip_first_layer_pe:
            raise ValueError("SharedImageDecoder expects SAM's two-way transformer (first layer skips the PE)")
        _, c, h, w = image_embedding.shape
        self.hw = (h, w)
        self.output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)  # [1+M,C]
        self.image = (image_embedding + dense_embedding).flatten(2)[0].T.contiguous()  # [N,C]
        self.pos = image_pe.flatten(2)[0].T.contiguous()  # [N,C]
        image_pos = self.image + self.pos
        # Layer 1's image-side projections, shared by every prompt.
        t2i = first.cross_attn_token_to_image
        heads, d = t2i.num_heads, t2i.internal_dim // t2i.num_heads
        self.keys1 = t2i.k_proj(image_pos).view(-1, heads, d).permute(1, 2, 0).contiguous()  # [H,d,N]
        self.values1 = t2i.v_proj(self.image).view(-1, heads, d).transpose(0, 1).contiguous()  # [H,N,d]
        self.queries1 = first.cross_attn_image_to_token.q_proj(image_pos)  # [N,D]

    # ----------------------------------------------------------------------------- attention
    @staticmethod
    def _token_to_shared_image(
        attn: nn.Module, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """Tokens [B,T,C] attend to the shared image (keys [H,d,N], values [H,N,d]) -> [B,T,C]."""
        b, t, _ = queries.shape
        heads, d = attn.num_heads, attn.internal_dim // attn.num_heads
        q = attn.q_proj(queries).view(b * t, heads, d).transpose(0, 1)  # [H,B*T,d]
        weights = torch.softmax(torch.bmm(q, keys) / math.sqrt(d), dim=-1)  # [H,B*T,N]
        out = torch.bmm(weights, values).transpose(0, 1).reshape(b, t, heads * d)
        return attn.out_proj(out)

    @staticmethod
    def _token_to_image(
        attn: nn.Module, queries: torch.Tensor, image: torch.Tensor, image_pos: torch.Tensor
    ) -> torch.Tensor:
        """Tokens [B,T,C] attend to per-prompt image tokens (values from ``image`` [B,N,C], keys
        from ``image_pos`` [B,N,C]) -> [B,T,C], without projecting the N image tokens."""
        heads, dim = attn.num_heads, attn.internal_dim
        mask = _head_mask(heads, dim, queries)
        q = attn.q_proj(queries) / math.sqrt(dim // heads)
        folded = _block_diagonal(q, mask) @ attn.k_proj.weight  # [B,H*T,C]
        weights = torch.softmax(torch.bmm(folded, image_pos.transpose(1, 2)), dim=-1)  # [B,H*T,N]
        pooled = torch.bmm(weights, image)  # [B,H*T,C]; softmax rows sum to 1, so the v bias adds once
        values = _take_block_diagonal(F.linear(pooled, attn.v_proj.weight, attn.v_proj.bias), mask)
        return attn.out_proj(values)

    @staticmethod
    def _image_to_token(
        attn: nn.Module,
        keys_in: torch.Tensor,
        values_in: torch.Tensor,
        residual: torch.Tensor,
        *,
        image_queries: torch.Tensor | None = None,
        image_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image tokens attend to the T prompt tokens: ``residual`` ([B,N,C] or shared [N,C]) plus the
        attention output, [B,N,C] (one new tensor: the residual add rides on the GEMM).

        keys_in, values_in [B,T,C]; either ``image_queries`` [N,D] (already projected, shared) or
        ``image_pos`` [B,N,C] (image + positional encoding, per prompt)."""
        b, t, _ = keys_in.shape
        heads, dim = attn.num_heads, attn.internal_dim
        mask = _head_mask(heads, dim, keys_in)
        k = _block_diagonal(attn.k_proj(keys_in) / math.sqrt(dim // heads), mask)  # [B,H*T,D]
        if image_queries is not None:
            logits = torch.matmul(image_queries, k.transpose(1, 2))  # [B,N,H*T]
        else:
            folded = k @ attn.q_proj.weight  # [B,H*T,C]
            logits = torch.baddbmm((k @ attn.q_proj.bias)[:, None, :], image_pos, folded.transpose(1, 2))
        n = logits.shape[1]
        weights = _softmax_small_last(logits.view(b, n, heads, t)).view(b, n, heads * t)
        v = _block_diagonal(attn.v_proj(values_in), mask)  # [B,H*T,D]
        projected = v @ attn.out_proj.weight.T  # [B,H*T,C]: out_proj applied to T tokens, not N
        return torch.baddbmm(residual + attn.out_proj.bias, weights, projected)

    # ------------------------------------------------------------------------------- forward
    def transformer(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sparse [B,S,C] -> (tokens [B,1+M+S,C], image tokens [B,N,C])."""
        b = sparse.shape[0]
        tokens = torch.cat([self.output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        transformer = self.decoder.transformer
        first = transformer.layers[0]
        queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        queries = first.norm2(
            queries
            + self._token_to_shared_image(first.cross_attn_token_to_image, queries + tokens, self.keys1, self.values1)
        )
        queries = first.norm3(queries + first.mlp(queries))
        image = first.norm4(
            self._image_to_token(
                first.cross_attn_image_to_token, queries + tokens, queries, self.image, image_queries=self.queries1
            )
        )
        for layer in transformer.layers[1:]:
            q = queries + tokens
            queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
            image_pos = image + self.pos
            queries = layer.norm2(
                queries + self._token_to_image(layer.cross_attn_token_to_image, queries + tokens, image, image_pos)
            )
            queries = layer.norm3(queries + layer.mlp(queries))
            image = layer.norm4(
                self._image_to_token(
                    layer.cross_attn_image_to_token, queries + tokens, queries, image, image_pos=image_pos
                )
            )
        queries = transformer.norm_final_attn(
            queries
            + self._token_to_image(transformer.final_attn_token_to_image, queries + tokens, image, image + self.pos)
        )
        return queries, image

    def iou(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B,T,C] -> predicted IoU [B,M] of the M mask tokens."""
        return self.decoder.iou_prediction_head(tokens[:, 0, :])

    def masks(self, tokens: torch.Tensor, image: torch.Tensor, which: tuple[int, ...] = (1, 2, 3)) -> torch.Tensor:
        """Low-resolution logits [B,len(which),4h,4w] of mask tokens ``which`` (tokens [B,T,C],
        image tokens [B,N,C])."""
        decoder = self.decoder
        conv1, norm, act1, conv2, act2 = decoder.output_upscaling
        b, n, c = image.shape
        h, w = self.hw
        # ConvTranspose2d(k=2, s=2) = per-pixel linear map to 2x2 sub-pixels: [C, (ky,kx,out)].
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(c, -1)
        up = torch.addmm(conv1.bias.repeat(4), image.reshape(b * n, c), w1).view(b, n, 4, -1)
        up = act1(F.layer_norm(up, (up.shape[-1],), norm.weight, norm.bias, norm.eps))
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.weight.shape[0], -1)
        up = act2(torch.addmm(conv2.bias.repeat(4), up.reshape(-1, up.shape[-1]), w2))  # [B*N*4, 4*C'']
        hyper = torch.stack([decoder.output_hypernetworks_mlps[i](tokens[:, 1 + i, :]) for i in which], dim=1)
        logits = torch.bmm(up.view(b, n * 16, -1), hyper.transpose(1, 2))  # [B, N*16, K]
        k = len(which)
        # index order (y, x, ky1, kx1, ky2, kx2): row = 4y + 2 ky1 + ky2, col = 4x + 2 kx1 + kx2
        logits = logits.view(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(b, k, 4 * h, 4 * w)
