"""Registry-wide model checks: every registered model builds (on the meta device: no memory, no
time), follows the common interface and declares its training defaults in one place."""

from __future__ import annotations

import warnings

import pytest
import torch

from train.models import build_model, list_models
from train.models.registry import ModelSpec, TrainDefaults, model_spec

ALL_MODELS = list_models()


def build_on_meta(name: str, **overrides) -> torch.nn.Module:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # VGGish without weights
        return build_model(name, **overrides)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_with_the_common_interface(name: str) -> None:
    spec = model_spec(name)
    assert isinstance(spec, ModelSpec) and isinstance(spec.train, TrainDefaults) and spec.description
    overrides = {"pretrained": None} if spec.config.get("pretrained") == "imagenet" else {}
    model = build_on_meta(name, **overrides)
    assert model.task == "binary" and model.num_classes == 2
    names = {n for n, _ in model.named_parameters()}
    backbone = model.backbone_parameter_names()
    assert backbone and backbone < names
    assert all(group["lr"] > 0 for group in model.parameter_groups(lr=1e-4))
    used = spec.resolved_config(overrides)
    assert {"backbone", "num_queries", "pretrained"} <= set(used)
    defaults = spec.train
    assert defaults.lr > 0 and defaults.max_steps >= 1 and len(defaults.size) == 2


@pytest.mark.parametrize(
    ("name", "backbone", "millions"),
    [("transavs_r101", "resnet101", 51.5), ("transavs_swin_b", "swin_b", 95.3), ("combo_swin_b", "swin_b", 284.5)],
)
def test_paper_backbone_models(name: str, backbone: str, millions: float) -> None:
    model = build_on_meta(name)
    assert model_spec(name).config["backbone"] == backbone
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - millions) < 0.1
    if name.startswith("transavs"):
        assert model.audio_queries.query_weight.shape[0] == 300  # N = 300
        assert model_spec(name).train == TrainDefaults(lr=1e-4, backbone_lr_mult=0.1, max_steps=90_000, batch_size=8)


def test_demo_defaults_are_the_demo_params() -> None:
    """combo_mnv2 keeps `make demo` as it was; transavs_mnv2 trains at the lr measured best on the demo."""
    demo = dict(lr=1e-3, max_steps=850, batch_size=4, size=(112, 112), inference_size=(224, 224))
    assert model_spec("combo_mnv2").train == TrainDefaults(**demo, freeze_backbone=True)
    assert model_spec("transavs_mnv2").train == TrainDefaults(**{**demo, "lr": 3e-3}, freeze_backbone=True)
    assert model_spec("combo").name == "combo_mnv2"  # aliases resolve to the spec


def test_resolved_config_records_loss_weights() -> None:
    combo = model_spec("combo_r50").resolved_config({"num_classes": 71})
    assert (combo["class_weight"], combo["mask_weight"], combo["dice_weight"]) == (2.0, 5.0, 5.0)
    assert combo["backbone"] == "resnet50" and combo["num_classes"] == 71 and combo["audio_encoder"] == "vggish"
    transavs = model_spec("transavs_tiny").resolved_config({"loss": {"d0": 0.5}})
    assert transavs["loss"] == {"d0": 0.5} and transavs["hidden_dim"] == 16


@pytest.mark.parametrize("name", ["combo_tiny", "transavs_tiny"])
def test_one_builder_style_rejects_unknown_keys_for_every_family(name: str) -> None:
    with pytest.raises(TypeError, match=rf"model '{name}': unknown keys \['hiden_dim'\] in its config; known keys: \["):
        build_model(name, hiden_dim=8)


@pytest.mark.parametrize("name", ["combo_tiny", "transavs_tiny"])
def test_freezing_goes_through_backbone_parameter_names(name: str) -> None:
    from train.loop import freeze_backbone, set_train_mode

    model = build_model(name)
    names = model.backbone_parameter_names()
    freeze_backbone(model)
    set_train_mode(model, frozen_backbone=True)
    for param_name, param in model.named_parameters():
        assert param.requires_grad == (param_name not in names), param_name
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norms and all(not m.training for m in norms.values())  # the small ResNet's BatchNorms: backbone only
    assert model.training and any(m.training for n, m in model.named_modules() if "decoder" in n)
    set_train_mode(model, frozen_backbone=False)
    assert all(m.training for m in model.modules())
