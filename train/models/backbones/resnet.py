"""ResNet backbones (torchvision blocks and names). Pretrained files: torchvision state dicts, and
detectron2 pickles in its model-zoo (``R-50.pkl`` as COMBO uses it) or Caffe2 layout."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from train.models.backbones.registry import STAGE_NAMES, register_backbone
from train.models.backbones.weights import caffe2_to_detectron2_name

if TYPE_CHECKING:  # imported when a ResNet is built: ``import torchvision`` costs ~165 MB (torch._dynamo)
    from torchvision.models.resnet import BasicBlock, Bottleneck


class ResNetBackbone(nn.Module):
    """ResNet trunk (torchvision parameter names, so torchvision ImageNet files load).

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50/101).
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        widths: base width of each stage (64, 128, 256, 512 in the standard nets); stage output
            channels are ``width * block.expansion``.
        stem_width: output channels of the 7x7 stem convolution.
        norm_layer: ``nn.BatchNorm2d`` or ``FrozenBatchNorm2d`` (Mask2Former / COMBO use frozen BN).

    forward(x [N,3,H,W]) -> dict res2..res5 at strides 4..32.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        stem_width: int = 64,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = stem_width
        stages = []
        for index, (num_blocks, width) in enumerate(zip(layers, widths)):
            stride = 1 if index == 0 else 2
            out_channels = width * block.expansion
            downsample = None
            if stride != 1 or in_channels != out_channels:
                downsample = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                    norm_layer(out_channels),
                )
            blocks = [block(in_channels, width, stride, downsample, norm_layer=norm_layer)]
            blocks += [block(out_channels, width, norm_layer=norm_layer) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = {name: w * block.expansion for name, w in zip(STAGE_NAMES, widths)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        res2 = self.layer1(x)
        res3 = self.layer2(res2)
        res4 = self.layer3(res3)
        res5 = self.layer4(res4)
        return {"res2": res2, "res3": res3, "res4": res4, "res5": res5}

    def adapt_pretrained(self, state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
        """torchvision names for a file of ``layout`` "torch" (kept), "detectron2" or "caffe2"."""
        if layout == "torch":
            return state
        if layout == "caffe2":
            # Training leftovers (``*_momentum``) and the ImageNet classifier (``fc1000_*``) are not backbone weights.
            kept = {k: v for k, v in state.items() if not k.endswith("_momentum") and not k.startswith("fc1000")}
            state = {caffe2_to_detectron2_name(k): v for k, v in kept.items()}
        state = {detectron2_to_torchvision_name(k): v for k, v in state.items()}
        return self._with_caffe2_norm_statistics(state)

    def _with_caffe2_norm_statistics(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Caffe2 norms are a scale and a bias only: mean 0 and variance 1 - eps make our norm layers
        apply exactly that scale (what detectron2's FrozenBatchNorm2d does with such files)."""
        state = dict(state)
        for name, module in self.named_modules():
            if hasattr(module, "running_var") and f"{name}.weight" in state and f"{name}.running_var" not in state:
                eps = float(getattr(module, "eps", 1e-5))
                state[f"{name}.running_mean"] = torch.zeros_like(state[f"{name}.weight"])
                state[f"{name}.running_var"] = torch.ones_like(state[f"{name}.weight"]) - eps
        return state


def detectron2_to_torchvision_name(name: str) -> str:
    """``res2.0.conv1.norm.weight`` -> ``layer1.0.bn1.weight``; ``stem.conv1.weight`` -> ``conv1.weight``;
    ``res3.0.shortcut.norm.bias`` -> ``layer2.0.downsample.1.bias`` (the inverse of detectron2's
    torchvision converter)."""
    name = re.sub(r"^stem\.conv1\.norm\.", "bn1.", name)
    name = re.sub(r"^stem\.", "", name)
    name = re.sub(r"^res([2-5])\.", lambda m: f"layer{int(m.group(1)) - 1}.", name)
    name = name.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.", ".downsample.0.")
    return re.sub(r"\.conv([1-3])\.norm\.", r".bn\1.", name)


def _norm(frozen_bn: bool) -> Callable[[int], nn.Module]:
    if not frozen_bn:
        return nn.BatchNorm2d
    from torchvision.ops.misc import FrozenBatchNorm2d

    return FrozenBatchNorm2d


def _block(name: str) -> type[BasicBlock] | type[Bottleneck]:
    """torchvision's ``BasicBlock`` or ``Bottleneck``, imported only when a ResNet is built, so that a
    model without one (MobileNetV2, PVT, Swin) never imports torchvision."""
    from torchvision.models import resnet

    return getattr(resnet, name)


@register_backbone("resnet50")
def resnet50(
    frozen_bn: bool = True, widths: tuple[int, int, int, int] = (64, 128, 256, 512), stem_width: int = 64
) -> ResNetBackbone:
    """ResNet-50 (paper config; frozen BN as in Mask2Former/COMBO). Channels 256/512/1024/2048.
    ``widths`` / ``stem_width``: a narrower trunk of the same depth (official COMBO checkpoints of
    small test configs; their widths are read from the tensor shapes)."""
    return ResNetBackbone(_block("Bottleneck"), (3, 4, 6, 3), tuple(widths), stem_width, norm_layer=_norm(frozen_bn))


@register_backbone("resnet101")
def resnet101(frozen_bn: bool = True) -> ResNetBackbone:
    """ResNet-101 (TransAVS's ImageNet-1K backbone; frozen BN). Channels 256/512/1024/2048."""
    return ResNetBackbone(_block("Bottleneck"), (3, 4, 23, 3), norm_layer=_norm(frozen_bn))


@register_backbone("resnet18")
def resnet18(frozen_bn: bool = False) -> ResNetBackbone:
    """ResNet-18, channels 64/128/256/512."""
    return ResNetBackbone(_block("BasicBlock"), (2, 2, 2, 2), norm_layer=_norm(frozen_bn))


@register_backbone("resnet18_small")
def resnet18_small(frozen_bn: bool = False, widths: tuple[int, int, int, int] = (8, 16, 24, 32)) -> ResNetBackbone:
    """ResNet-18 layout with few channels (default 8/16/24/32) for fast tests; no pretrained weights."""
    return ResNetBackbone(
        _block("BasicBlock"), (2, 2, 2, 2), widths=tuple(widths), stem_width=widths[0], norm_layer=_norm(frozen_bn)
    )
