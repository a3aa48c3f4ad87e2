"""Model outputs -> label maps: the one place that turns what a model predicts into labels (evaluation,
its strips and the negative-audio checks, and ``avs predict`` all call it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from train.data import prepare_batch


def scores_to_labels(scores: torch.Tensor, task: str, threshold: float = 0.5) -> torch.Tensor:
    """Binary: foreground probability [..., H, W] -> uint8 {0, 1} (p > ``threshold``); semantic: class
    scores [..., K, H, W] -> uint8 class ids [..., H, W] (argmax; K <= 256)."""
    labels = scores > threshold if task == "binary" else scores.argmax(-3)
    return labels.to(torch.uint8)


@torch.no_grad()
def predict_labels(
    model: nn.Module, batch: dict[str, Any], device: torch.device | str, size: Sequence[int], threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch (:func:`train.data.collate_clips`) -> (scores, labels), both on the CPU at ``size``
    (H, W): binary scores are the foreground probability float [B,T,H,W], semantic ones the class scores
    float [B,T,K,H,W]; labels uint8 [B,T,H,W] (:func:`scores_to_labels`)."""
    scores = model.predict(model(prepare_batch(batch, device)), size=tuple(size)).float().cpu()
    return scores, scores_to_labels(scores, model.task, threshold)
