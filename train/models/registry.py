"""Model registry: ``register_model("name")`` decorator, ``build_model(name, **overrides)``, ``list_models()``.

A registered builder is a function ``builder(**overrides) -> nn.Module`` whose keyword
arguments are the config of that model; ``overrides`` replace its defaults.

Every model built here follows the common interface the training loop relies on::

    outputs = model(batch)                            # dict
    losses = model.compute_losses(outputs, batch)     # dict of scalars, "total" to backprop
    probs = model.predict(outputs, size=(H, W))       # binary [B,T,H,W] / semantic [B,T,C,H,W]
    groups = model.parameter_groups(lr=1e-4, weight_decay=0.05, backbone_lr_mult=0.1)
    model.task, model.num_classes
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

import torch.nn as nn

from pipeline.registry import Registry

ModelBuilder = Callable[..., nn.Module]

_MODELS = Registry("model")

# Modules that register models when imported. Imported lazily by build_model/list_models
# so that importing a single part (e.g. a backbone) does not build the whole model zoo.
_MODEL_MODULES: tuple[str, ...] = ("train.models.combo", "train.models.transavs")


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(**cfg) -> nn.Module`` under ``name``."""
    return _MODELS.register(name)


def _import_model_modules() -> None:
    for module_name in _MODEL_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name)


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    _import_model_modules()
    return sorted(_MODELS)


# Short names for the configs that train on a CPU in minutes (`dvc exp run -S train.model=transavs`).
MODEL_ALIASES: dict[str, str] = {"combo": "combo_mnv2", "transavs": "transavs_mnv2"}


def build_model(name: str, **overrides) -> nn.Module:
    """Build the registered model ``name`` (or an alias); keyword ``overrides`` replace config defaults."""
    _import_model_modules()
    name = MODEL_ALIASES.get(name, name)
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(_MODELS)}")
    return _MODELS[name](**overrides)
