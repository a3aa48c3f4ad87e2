"""COMBO adaptive inter-frame consistency loss (paper Sec. 3.3, eq. 6-7).

S_{t:t+1} = cos(O^mask_t, O^mask_{t+1})                       (eq. 6)
L_t       = 1 - S_{t:t+1}
L_ada     = mean_{videos, t} exp(-L_t) * L_t = exp(S - 1)(1 - S)   (eq. 7, averaged instead of summed)

The adaptive weight exp(-L_t) is not detached (as in the published code): pairs that already
differ strongly get a small weight, so genuine scene changes are not forced together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def adaptive_inter_frame_loss(mask_logits: torch.Tensor) -> torch.Tensor:
    """Adaptive inter-frame consistency loss.

    Args:
        mask_logits: [B, T, ...] mask logits per frame (e.g. [B,T,Q,h,w]); each frame's logits are
            flattened into one vector for the cosine similarity.
    Returns:
        scalar: mean over the B*(T-1) consecutive pairs of exp(-L_t) * L_t, L_t = 1 - cos.
        Zero (still attached to the graph) when T < 2.
    """
    if mask_logits.dim() < 3:
        raise ValueError(f"mask_logits must be [B,T,...], got shape {tuple(mask_logits.shape)}")
    if mask_logits.shape[1] < 2:
        return mask_logits.sum() * 0.0
    flat = mask_logits.float().flatten(2)
    similarity = F.cosine_similarity(flat[:, :-1], flat[:, 1:], dim=-1, eps=1e-8)  # [B, T-1]
    pair_loss = 1.0 - similarity
    return (torch.exp(-pair_loss) * pair_loss).mean()


__all__ = ["adaptive_inter_frame_loss"]
