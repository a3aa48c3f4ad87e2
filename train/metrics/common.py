"""Constants of the AVSBench protocol and the input checks shared by the binary and semantic metrics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

NUM_F_THRESHOLDS = 255
F_BETA_SQUARED = 0.3
BINARY_IOU_EPS = 1e-7
PRECISION_RECALL_EPS = 1e-20
SEMANTIC_IOU_EPS = 2.220446049250313e-16  # float64 machine epsilon, as AVSBench writes it


def as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}") from error


def check_binary_inputs(probs: Any, gt: Any, where: str) -> tuple[Tensor, Tensor]:
    """Return ``(probs float32/float64 [N,H,W], gt bool [N,H,W])`` or raise ValueError."""
    probs = as_tensor(probs, f"{where} probs")
    gt = as_tensor(gt, f"{where} gt")
    if probs.dim() != 3:
        raise ValueError(f"{where}: probs must have shape [N,H,W], got {tuple(probs.shape)}")
    if gt.shape != probs.shape:
        raise ValueError(f"{where}: gt shape {tuple(gt.shape)} differs from probs shape {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise ValueError(f"{where}: probs must be floating point, got {probs.dtype}")
    if probs.dtype != torch.float64:
        # AVSBench compares float32 probabilities with float32 thresholds.
        probs = probs.float()
    if probs.numel() > 0:
        if not bool(torch.isfinite(probs).all()):
            raise ValueError(f"{where}: probs contain NaN or infinity")
        low, high = float(probs.min()), float(probs.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"{where}: probs must lie in [0,1] (got min {low:.4g}, max {high:.4g}); "
                "apply torch.sigmoid to logits first"
            )
    gt = gt.to(probs.device)
    if gt.dtype != torch.bool:
        if not bool(((gt == 0) | (gt == 1)).all()):
            raise ValueError(f"{where}: gt must hold only 0 and 1")
        gt = gt != 0
    return probs, gt


def check_valid(valid: Any, num_frames: int, device: torch.device, where: str) -> Tensor:
    """Return ``valid`` as bool [T] on ``device``; None means every frame is labelled."""
    if valid is None:
        return torch.ones(num_frames, dtype=torch.bool, device=device)
    valid = as_tensor(valid, f"{where} valid").to(device)
    if valid.shape != (num_frames,):
        raise ValueError(f"{where}: valid must have shape [T]=({num_frames},), got {tuple(valid.shape)}")
    if valid.dtype != torch.bool:
        if not bool(((valid == 0) | (valid == 1)).all()):
            raise ValueError(f"{where}: valid must be boolean")
        valid = valid != 0
    return valid
