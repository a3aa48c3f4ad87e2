"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, eq. 5).

    FL(p_t) = -alpha_t * (1 - p_t)^gamma * log(p_t)

``p_t`` is the predicted probability of the target class. The paper defines ``alpha_t = alpha``
for the foreground class and ``1 - alpha`` for the background class; the softmax version here
keeps that convention with class 0 as background and every class >= 1 as foreground.
``gamma = 0`` and ``alpha = None`` reduce both functions to plain cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_REDUCTIONS = ("none", "sum", "mean")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"focal loss: unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")


def softmax_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float | torch.Tensor | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Multi-class focal loss on softmax probabilities.

    Args:
        logits: [..., K] class logits.
        targets: [...] int64 target class in ``0..K-1``.
        alpha: ``None`` (no class weighting); a float: weight ``alpha`` for targets >= 1
            (foreground) and ``1 - alpha`` for target 0 (background), as alpha_t in [29];
            or a [K] tensor of per-class weights.
        gamma: focusing parameter (>= 0).
        reduction: "none" ([...] per element), "sum" or "mean".

    Returns:
        FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t, reduced as asked.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"softmax_focal_loss: logits {tuple(logits.shape)} do not match targets "
            f"{tuple(targets.shape)} (expected logits [..., K], targets [...])"
        )
    if gamma < 0:
        raise ValueError(f"softmax_focal_loss: gamma must be >= 0, got {gamma}")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    log_pt = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    pt = log_pt.exp()
    loss = -((1.0 - pt).clamp_min(0.0) ** gamma) * log_pt
    if alpha is not None:
        if isinstance(alpha, torch.Tensor):
            if alpha.shape != (logits.shape[-1],):
                raise ValueError(
                    f"softmax_focal_loss: per-class alpha must have shape "
                    f"[{logits.shape[-1]}], got {tuple(alpha.shape)}"
                )
            alpha_t = alpha.to(loss)[targets]
        else:
            alpha_t = torch.where(targets > 0, loss.new_tensor(alpha), loss.new_tensor(1.0 - alpha))
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Binary focal loss on sigmoid probabilities, element-wise ([29] eq. 5 with alpha_t).

    Args:
        logits: [...] logits.
        targets: [...] float targets in [0, 1] (same shape).
        alpha: weight of positives (negatives get ``1 - alpha``); ``None`` for no weighting.
        gamma: focusing parameter (>= 0).
        reduction: "none", "sum" or "mean".
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"sigmoid_focal_loss: logits {tuple(logits.shape)} and targets "
            f"{tuple(targets.shape)} must have the same shape"
        )
    logits = logits.float()
    targets = targets.to(logits)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    pt = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - pt) ** gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


__all__ = ["sigmoid_focal_loss", "softmax_focal_loss"]
