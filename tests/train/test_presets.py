"""Paper presets (train.preset) and model defaults: validation, resolution order, what the checkpoint
records, and two real training steps of every preset on the toy shards."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import pytest
import torch

from pipeline.params import ParamsError, from_section
from pipeline.registry import UnknownNameError
from train.checkpoint import load_checkpoint
from train.loop import ResolvedTrainParams, TrainParams, resolve_train_params, train
from train.models.presets import get_preset, list_presets
from train.models.registry import builder_keys, model_spec

COMBO_ROWS = [f"combo_{b}_{s}" for b in ("r50", "pvt_b5") for s in ("s4", "ms3", "avss")]
TRANSAVS_ROWS = [f"transavs_{b}_{s}" for b in ("r101", "swin_b") for s in ("s4", "ms3")]


def small_parts(tiny: str, left_to_the_preset: set[str]) -> dict:
    """The widths of the registered test model ``tiny``, for the fast two-step runs (the preset keeps its
    recipe: lr, schedule, losses, audio path); sequences as lists, as params.yaml gives them."""
    config = model_spec(tiny).config
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if k not in left_to_the_preset}


SMALL = {
    "combo": small_parts("combo_tiny", {"audio_dim"}),  # the preset's audio path sets the input
    "transavs": small_parts("transavs_tiny", {"decoder_layers", "max_frames"}),
}

pytestmark = pytest.mark.usefixtures("single_thread")  # tests/train/conftest.py


def test_the_paper_rows_are_registered() -> None:
    assert list_presets() == sorted(COMBO_ROWS + TRANSAVS_ROWS)


@pytest.mark.parametrize("name", COMBO_ROWS + TRANSAVS_ROWS)
def test_every_preset_validates(name: str) -> None:
    preset = get_preset(name)
    assert set(preset.train) - {"model_config"} <= set(TrainParams.__dataclass_fields__)
    spec = model_spec(preset.train["model"])
    assert set(preset.train["model_config"]) <= set(builder_keys(spec.builder))
    cfg = resolve_train_params(TrainParams(preset=name, datasets=["s4"]))
    assert cfg.model == preset.train["model"] and cfg.lr == 1e-4 and cfg.backbone_lr_mult == 0.1
    assert cfg.batch_size == 8 and cfg.size == [224, 224] and cfg.inference_size == [224, 224]
    assert cfg.freeze_backbone is False and cfg.preset == name
    assert preset.source and len(preset.paper_j_f) == 2


def test_combo_rows_have_the_released_config_values() -> None:
    steps = {row: resolve_train_params(TrainParams(preset=row)).max_steps for row in COMBO_ROWS}
    assert steps == {row: 20_000 if row.endswith("ms3") else 90_000 for row in COMBO_ROWS}
    avss = resolve_train_params(TrainParams(preset="combo_pvt_b5_avss"))
    assert (avss.task, avss.amp, avss.audio_key, avss.grad_clip) == ("semantic", "bf16", "logmel", 0.01)
    assert avss.model_config["lambda_ada"] == 10.0 and avss.model_config["num_points"] == 12544
    assert get_preset("combo_r50_ms3").source.endswith("configs/avs_ms3/COMBO_R50_bs8_20k.yaml")
    assert get_preset("combo_pvt_b5_s4").paper_j_f == (84.7, 91.9)


def test_transavs_rows_have_the_paper_values() -> None:
    cfg = resolve_train_params(TrainParams(preset="transavs_swin_b_ms3"))
    assert cfg.model == "transavs_swin_b" and cfg.max_steps == 90_000 and cfg.model_config["num_queries"] == 300
    loss = cfg.model_config["loss"]
    assert (loss["weight_aqdl"], loss["weight_aqml"], loss["weight_class"], loss["weight_dice"]) == (2, 2, 5, 5)
    assert get_preset("transavs_r101_s4").paper_j_f == (83.1, 90.6)


def test_resolution_order_explicit_then_preset_then_model_then_fallback() -> None:
    cfg = resolve_train_params(TrainParams(preset="combo_r50_s4", lr=3e-4, model_config={"num_queries": 50}))
    assert cfg.lr == 3e-4 and cfg.max_steps == 90_000  # explicit, preset
    assert cfg.model_config["num_queries"] == 50 and cfg.model_config["class_weight"] == 2.0
    demo = resolve_train_params(TrainParams(model="transavs_mnv2"))
    assert (demo.lr, demo.max_steps, demo.size, demo.freeze_backbone) == (3e-3, 850, [112, 112], True)
    assert (demo.task, demo.amp, demo.audio_key) == ("binary", "auto", "embeddings")  # fallbacks
    assert resolve_train_params(TrainParams()).model == "combo_mnv2"


def test_resolved_params_are_resolved_once() -> None:
    """`avs train` resolves for its task check and trains on the result: resolving again changes nothing
    (a preset's model_config is not merged twice) and returns the very object."""
    cfg = resolve_train_params(TrainParams(preset="combo_r50_s4", lr=3e-4, model_config={"num_queries": 50}))
    assert isinstance(cfg, ResolvedTrainParams) and resolve_train_params(cfg) is cfg
    assert asdict(cfg) == asdict(resolve_train_params(TrainParams(**asdict(cfg))))  # resolving is idempotent
    assert [key for key, value in asdict(cfg).items() if value is None] == ["threads"]  # None: torch's default


def test_bad_presets_and_conflicts_are_one_line_errors() -> None:
    with pytest.raises(UnknownNameError, match="unknown preset 'combo_r50_s5'; known presets: combo_pvt_b5_avss"):
        get_preset("combo_r50_s5")
    with pytest.raises(ParamsError, match="train.model is 'combo_mnv2' but train.preset 'combo_r50_s4' trains"):
        resolve_train_params(TrainParams(model="combo_mnv2", preset="combo_r50_s4"))
    with pytest.raises(ParamsError, match="train.lr must be > 0"):
        from_section(TrainParams, {"preset": "combo_r50_s4", "lr": -1}, "train")


def two_steps(name: str, toy_root, tmp_path, toy_params, model_config: dict) -> dict:
    family = name.split("_")[0]
    overrides = dict(SMALL[family]) if model_config is None else model_config
    params = toy_params(
        model=None, preset=name, batch_size=2, max_steps=2, size=None, grad_clip=None, model_config=overrides
    )
    params.size = params.inference_size = [32, 32]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VGGish without weights; the toy shards' proposals are MobileSAM's
        result = train(params, str(toy_root), [0], tmp_path / name, progress=False)
    assert result["steps"] == 2 and all(torch.isfinite(torch.tensor(result["losses"])))
    return load_checkpoint(result["final"])


@pytest.mark.parametrize("name", COMBO_ROWS + TRANSAVS_ROWS)
def test_every_preset_trains_two_steps(name: str, toy_root, tmp_path, toy_params) -> None:
    ckpt = two_steps(name, toy_root, tmp_path, toy_params, None)
    used = ckpt["train_params"]
    assert used["preset"] == name and used["lr"] == 1e-4 and used["backbone_lr_mult"] == 0.1
    assert used["max_steps"] == 2 and used["batch_size"] == 2 and used["grad_clip"] == 0.01
    record = ckpt["model_config_used"]
    assert record["backbone"] == "resnet18_small" and record["num_classes"] == (71 if "avss" in name else 2)
    if name.startswith("combo"):
        assert used["audio_key"] == "logmel" and record["audio_encoder"] == "vggish" and record["lambda_ada"] == 10.0
    else:
        assert record["loss"]["weight_class"] == 5.0 and record["num_queries"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("name", COMBO_ROWS + TRANSAVS_ROWS)
def test_every_preset_trains_two_steps_at_full_size(name: str, toy_root, tmp_path, toy_params) -> None:
    """The real models (ResNet-50 / PVT-v2-B5 / ResNet-101 / Swin-B, 100-300 queries) on 32x32 toy clips."""
    ckpt = two_steps(name, toy_root, tmp_path, toy_params, {})
    assert ckpt["model_config_used"]["backbone"] == model_spec(get_preset(name).train["model"]).config["backbone"]


def test_unknown_names_in_params_are_one_line_params_errors() -> None:
    with pytest.raises(ParamsError, match="params 'train': unknown preset 'combo_r50_s5'; known presets: combo_pvt"):
        from_section(TrainParams, {"preset": "combo_r50_s5"}, "train")
    with pytest.raises(ParamsError, match="params 'train': unknown model 'combo_r5'; known models: combo_mnv2"):
        from_section(TrainParams, {"model": "combo_r5"}, "train")
