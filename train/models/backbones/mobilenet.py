"""MobileNetV2 backbone (torchvision layout; ImageNet weights ship offline)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.mobilenetv2 import MobileNetV2

from train.models.backbones.registry import register_backbone


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2 ``features`` (same parameter names, so IMAGENET1K_V1 loads) cut
    into four stages; the final 1x1 conv to 1280 channels (``features.18``) is dropped.

    forward(x [N,3,H,W]) -> res2 [N,24,H/4,W/4], res3 [N,32,H/8,W/8], res4 [N,96,H/16,W/16],
    res5 [N,320,H/32,W/32].
    """

    # Index (exclusive) in ``features`` where each stage ends.
    _STAGE_ENDS = {"res2": 4, "res3": 7, "res4": 14, "res5": 18}

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*list(MobileNetV2().features.children())[:18])
        self.out_channels = {"res2": 24, "res3": 32, "res4": 96, "res5": 320}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, end in self._STAGE_ENDS.items():
            for index in range(start, end):
                x = self.features[index](x)
            out[name] = x
            start = end
        return out


@register_backbone("mobilenet_v2")
def mobilenet_v2() -> MobileNetV2Backbone:
    """MobileNetV2 (width 1.0); ``build_backbone("mobilenet_v2", pretrained="imagenet")`` loads the
    offline ImageNet weights."""
    return MobileNetV2Backbone()
