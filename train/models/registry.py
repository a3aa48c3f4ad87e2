"""Model registry: ``register_model(name, builder, config=..., train=...)``, ``build_model(name, **overrides)``,
``list_models()``, ``model_spec(name)``.

Every model family has one builder function (``build_combo``, ``build_transavs``) whose keyword
arguments are the whole config of a model of that family. A registered model is a
:class:`ModelSpec`: that builder, the keyword values that make this model (backbone, widths, loss
weights ...) and its recommended training settings (:class:`TrainDefaults`), all in one place, the
way a timm model carries its default config. ``train.*`` keys left ``null`` in params.yaml take the
model's :class:`TrainDefaults` (:func:`train.loop.resolve_train_params`).

Every model built here follows the common interface the training loop relies on::

    outputs = model(batch)                            # dict
    losses = model.compute_losses(outputs, batch)     # dict of scalars, "total" to backprop
    probs = model.predict(outputs, size=(H, W))       # binary [B,T,H,W] / semantic [B,T,C,H,W]
    groups = model.parameter_groups(lr=1e-4, weight_decay=0.05, backbone_lr_mult=0.1)
    model.task, model.num_classes, model.backbone_parameter_names()
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from pipeline.registry import Registry

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class TrainDefaults:
    """A model's recommended ``train.*`` values (the paper's, or the CPU demo's for the demo models).

    ``size`` / ``inference_size``: model input [H, W] in training / when scoring (None = ``size``).
    """

    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.05
    max_steps: int = 90_000
    batch_size: int = 8
    size: tuple[int, int] = (224, 224)
    inference_size: tuple[int, int] | None = None
    freeze_backbone: bool = False
    grad_clip: float = 0.01

    def as_params(self) -> dict[str, Any]:
        """The values as params.yaml writes them (sizes as lists)."""
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


# The recipe both papers train with (Mask2Former's: COMBO's configs, TransAVS Sec. 4): AdamW 1e-4,
# backbone x0.1, weight decay 0.05, gradient clip 0.01, 90k iterations of batch 8 at 224.
PAPER_TRAIN = TrainDefaults()
# The CPU demo (`make demo`): frozen ImageNet MobileNetV2, 850 steps of 4 clips at 112, scored at 224.
CPU_DEMO_TRAIN = TrainDefaults(
    lr=1e-3, max_steps=850, batch_size=4, size=(112, 112), inference_size=(224, 224), freeze_backbone=True
)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: ``builder(**{**config, **overrides})`` builds it.

    ``config``: the builder keywords that make this model; ``train``: its training defaults.
    """

    name: str
    builder: ModelBuilder
    config: Mapping[str, Any] = field(default_factory=dict)
    train: TrainDefaults = field(default_factory=TrainDefaults)
    description: str = ""

    def __call__(self, **overrides: Any) -> nn.Module:
        return self.builder(**self.merged(overrides))

    def merged(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """This model's config with ``overrides`` applied; unknown keys are a ``TypeError`` listing the known ones."""
        known = builder_keys(self.builder)
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TypeError(f"model {self.name!r}: unknown keys {unknown} in its config; known keys: {known}")
        return {**self.config, **overrides}

    def resolved_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every builder keyword with the value the model is built with (builder default, this
        model's config, then ``overrides``): the record of the settings actually used."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(self.builder).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        return {**defaults, **self.merged(overrides or {})}


def builder_keys(builder: ModelBuilder) -> list[str]:
    """The keyword arguments a family builder accepts."""
    return sorted(inspect.signature(builder).parameters)


# Short names for the configs that train on a CPU in minutes (`dvc exp run -S train.model=transavs`).
MODEL_ALIASES: dict[str, str] = {"combo": "combo_mnv2", "transavs": "transavs_mnv2"}

_MODELS = Registry("model", modules=("train.models.combo", "train.models.transavs"), aliases=MODEL_ALIASES)


def register_model(
    name: str,
    builder: ModelBuilder,
    *,
    config: Mapping[str, Any] | None = None,
    train: TrainDefaults | None = None,
    description: str = "",
) -> ModelSpec:
    """Register model ``name``: the family ``builder`` called with ``config``; ``train`` its training defaults."""
    unknown = sorted(set(config or {}) - set(builder_keys(builder)))
    if unknown:
        raise TypeError(f"model {name!r}: {builder.__name__} has no keys {unknown}")
    spec = ModelSpec(name, builder, dict(config or {}), train or TrainDefaults(), description)
    _MODELS.add(name, spec)
    return spec


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    return _MODELS.names()


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name`` (or of an alias); ``UnknownNameError`` lists the known names."""
    return _MODELS.lookup(name)


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` (or an alias); keyword ``overrides`` replace config defaults."""
    return model_spec(name)(**overrides)
