"""MobileNetV2 backbone (torchvision layout; ImageNet weights ship offline).

The network is built here rather than imported from torchvision: ``import torchvision`` also imports
``torch._dynamo`` (its ``ops`` package does), with sympy and triton, about 165 MB of resident memory
that ``avs evaluate`` and ``avs predict`` would carry for a 2-MB backbone. Parameter names, the
initialisation and the random numbers it draws are torchvision's ``MobileNetV2`` (width 1.0), so its
ImageNet file loads and a model built after the backbone initialises as before
(tests/train/test_backbones_mobilenet.py compares the two).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from train.models.backbones.registry import register_backbone

# (expansion t, output channels c, repeats n, first stride s) of each stage: torchvision's width-1.0 net.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
LAST_BLOCK = (6, 320, 1, 1)
STEM_CHANNELS, HEAD_CHANNELS, IMAGENET_CLASSES = 32, 1280, 1000


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
    """Conv (no bias, "same" padding) -> BatchNorm -> ReLU6, named 0, 1, 2 as torchvision's
    ``Conv2dNormActivation``: [N,Cin,H,W] -> [N,Cout,H/stride,W/stride]."""
    padding = (kernel_size - 1) // 2
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion (when ``expand_ratio`` > 1), 3x3 depthwise, linear 1x1
    projection; a residual connection when shape is kept. [N,Cin,H,W] -> [N,Cout,H/stride,W/stride]."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = [conv_bn_relu6(in_channels, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_features() -> list[nn.Module]:
    """torchvision's ``MobileNetV2().features`` blocks 0..17 (stem and inverted residuals), initialised
    as torchvision does. The 1x1 conv to 1280 channels (``features.18``) and the classifier are built and
    initialised too, then dropped: the random numbers drawn stay torchvision's."""
    features: list[nn.Module] = [conv_bn_relu6(3, STEM_CHANNELS, stride=2)]
    channels = STEM_CHANNELS
    for t, c, n, s in (*INVERTED_RESIDUAL_SETTING, LAST_BLOCK):
        for i in range(n):
            features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
            channels = c
    head = conv_bn_relu6(channels, HEAD_CHANNELS, kernel_size=1)
    classifier = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)
    for module in nn.ModuleList([*features, head, classifier]).modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    return features


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 ``features`` (torchvision's parameter names, so IMAGENET1K_V1 loads) cut into four
    stages; the final 1x1 conv to 1280 channels (``features.18``) is dropped.

    forward(x [N,3,H,W]) -> res2 [N,24,H/4,W/4], res3 [N,32,H/8,W/8], res4 [N,96,H/16,W/16],
    res5 [N,320,H/32,W/32].
    """

    # Index (exclusive) in ``features`` where each stage ends.
    _STAGE_ENDS = {"res2": 4, "res3": 7, "res4": 14, "res5": 18}

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*mobilenet_v2_features())
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
