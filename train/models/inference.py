"""Mask-classification inference (Mask2Former semantic inference; COMBO Sec. 3.4).

score_k(p) = sum_q softmax(class_q)_k * sigmoid(mask_q(p)) for the K object classes (the
no-object column is dropped); semantic datasets take the argmax over k. Binary datasets (S4/MS3)
have K = 2 (0 background, 1 foreground) and report the normalised foreground score
score_1 / (score_0 + score_1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_mask_logits(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of mask logits [..., Q, h, w] -> [..., Q, H, W] (before the sigmoid)."""
    lead = mask_logits.shape[:-3]
    flat = mask_logits.reshape(-1, *mask_logits.shape[-3:])
    if tuple(flat.shape[-2:]) != tuple(size):
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return flat.reshape(*lead, *flat.shape[-3:])


def semantic_scores(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel class scores.

    Args:
        class_logits: [..., Q, K+1] (last column = no object).
        mask_logits: [..., Q, H, W].
    Returns:
        [..., K, H, W] = sum_q softmax(class_q)[:K] * sigmoid(mask_q), float32.
    """
    class_probs = class_logits.float().softmax(-1)[..., :-1]
    mask_probs = mask_logits.float().sigmoid()
    return torch.einsum("...qk,...qhw->...khw", class_probs, mask_probs)


def binary_foreground_probability(scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Foreground probability from binary class scores [..., 2, H, W] -> [..., H, W] in [0, 1]:
    score_1 / (score_0 + score_1)."""
    if scores.shape[-3] != 2:
        raise ValueError(f"binary inference needs 2 classes (background, foreground), got {scores.shape[-3]}")
    return scores[..., 1, :, :] / (scores.sum(-3) + eps)


def predict_from_outputs(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int], task: str
) -> torch.Tensor:
    """Final-layer predictions -> binary foreground probability [..., H, W] (task "binary") or
    class scores [..., K, H, W] (task "semantic") at ``size``."""
    scores = semantic_scores(class_logits, upsample_mask_logits(mask_logits, size))
    if task == "binary":
        return binary_foreground_probability(scores)
    if task == "semantic":
        return scores
    raise ValueError(f"unknown task {task!r}; expected 'binary' or 'semantic'")


__all__ = ["binary_foreground_probability", "predict_from_outputs", "semantic_scores", "upsample_mask_logits"]
