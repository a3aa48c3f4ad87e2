"""Named training presets: the papers' rows as ``train.*`` values (``train.preset: combo_r50_s4``).

A preset fills the ``train`` keys params.yaml leaves ``null`` (its ``model_config`` goes under the
file's own ``model_config``); the model's :class:`~train.models.registry.TrainDefaults` fill what the
preset leaves out. ``features`` names the feature settings the row was trained with (audio encoder,
proposal backend): the training loop warns when the cached shards were made otherwise.
Datasets are not part of a preset: ``train.datasets`` names the user's own manifests.

COMBO values are read from the released configs (yannqi/COMBO-AVS ``configs/avs_*``; the file is
named on each preset), TransAVS values from its paper (Sec. 4, implementation details).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.registry import Registry


@dataclass(frozen=True)
class Preset:
    """One paper row: ``train`` values, the ``features`` it needs and the paper's M_J / M_F (percent)."""

    name: str
    source: str  # the config file or paper section the values come from
    train: Mapping[str, Any]
    features: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper_j_f: tuple[float, float] | None = None

    def __call__(self) -> Preset:  # registry members are callables
        return self


_PRESETS = Registry("preset")

# COMBO (configs/avs_{s4,ms3,ss}/COMBO_*_bs8_{90k,20k}.yaml and their _BASE_ files):
# SOLVER: IMS_PER_BATCH 8, BASE_LR 1e-4, BACKBONE_MULTIPLIER 0.1, WEIGHT_DECAY 0.05, AdamW, WarmupPolyLR
# without warm-up, CLIP_GRADIENTS full_model 0.01; INPUT: shortest edge 112..448 (0.5-2x of 224), crop 224,
# SSD colour augmentation, flip; MASK_FORMER: CLASS 2, MASK 5, DICE 5, NO_OBJECT 0.1, 100 queries,
# 12544 points; COSINE_WEIGHT (lambda_ada) 10 in all six files (the paper's Sec. 4.2 gives 5 for AVSS;
# the released configs, which made the released checkpoints, say 10); audio: frozen VGGish in the model,
# no PCA; maskiges: Semantic-SAM SwinL. AMP on for AVSS only.
_COMBO_TRAIN: dict[str, Any] = {
    "audio_key": "logmel",
    "batch_size": 8,
    "lr": 1e-4,
    "backbone_lr_mult": 0.1,
    "weight_decay": 0.05,
    "grad_clip": 0.01,
    "poly_power": 0.9,
    "size": [224, 224],
    "inference_size": [224, 224],
    "scale_range": [0.5, 2.0],
    "hflip": True,
    "freeze_backbone": False,
}
_COMBO_MODEL = {
    "audio_encoder": "vggish",
    "num_queries": 100,
    "class_weight": 2.0,
    "mask_weight": 5.0,
    "dice_weight": 5.0,
    "no_object_weight": 0.1,
    "num_points": 12544,
    "lambda_ada": 10.0,
}
_COMBO_FEATURES = {"proposals": {"backend": "semantic_sam"}}  # audio: log-mel, VGGish runs in the model
_COMBO_SUBSETS = {  # subset -> (config folder, iterations, task, AMP)
    "s4": ("avs_s4", 90_000, "binary", "off"),
    "ms3": ("avs_ms3", 20_000, "binary", "off"),
    "avss": ("avs_ss", 90_000, "semantic", "bf16"),
}
# COMBO paper, Tables 1 (S4, MS3) and 2 (AVSS): M_J / M_F.
_COMBO_PAPER = {
    ("r50", "s4"): (81.7, 90.1),
    ("r50", "ms3"): (54.5, 66.6),
    ("r50", "avss"): (33.3, 37.3),
    ("pvt_b5", "s4"): (84.7, 91.9),
    ("pvt_b5", "ms3"): (59.2, 71.2),
    ("pvt_b5", "avss"): (42.1, 46.1),
}
_COMBO_CONFIG_NAME = {"r50": "COMBO_R50", "pvt_b5": "COMBO_PVTV2B5"}


def _register_combo(backbone: str, subset: str) -> None:
    folder, steps, task, amp = _COMBO_SUBSETS[subset]
    name = f"combo_{backbone}_{subset}"
    preset = Preset(
        name=name,
        source=f"yannqi/COMBO-AVS configs/{folder}/{_COMBO_CONFIG_NAME[backbone]}_bs8_{steps // 1000}k.yaml",
        train={
            "model": f"combo_{backbone}",
            "task": task,
            "max_steps": steps,
            "amp": amp,
            **_COMBO_TRAIN,
            "model_config": dict(_COMBO_MODEL),
        },
        features=_COMBO_FEATURES,
        paper_j_f=_COMBO_PAPER[(backbone, subset)],
    )
    _PRESETS.add(name, preset)


for _backbone in ("r50", "pvt_b5"):
    for _subset in ("s4", "ms3", "avss"):
        _register_combo(_backbone, _subset)

# TransAVS paper, Sec. 4 (implementation details): AdamW 1e-4, backbone multiplier 0.1, 90k iterations
# of batch 8 for every model, N = 300 queries, lambda_1 = lambda_2 = 2, lambda_3 = lambda_4 = 5;
# ResNet-101 from ImageNet-1K, Swin-B from ImageNet-22K. Table 1: M_J / M_F.
_TRANSAVS_PAPER = {
    ("r101", "s4"): (83.1, 90.6),
    ("r101", "ms3"): (58.9, 72.9),
    ("swin_b", "s4"): (89.4, 94.2),
    ("swin_b", "ms3"): (63.5, 75.2),
}
_TRANSAVS_MODEL = {
    "num_queries": 300,
    "loss": {"weight_aqdl": 2.0, "weight_aqml": 2.0, "weight_class": 5.0, "weight_dice": 5.0},
}
for (_backbone, _subset), _scores in _TRANSAVS_PAPER.items():
    _PRESETS.add(
        f"transavs_{_backbone}_{_subset}",
        Preset(
            name=f"transavs_{_backbone}_{_subset}",
            source="TransAVS paper, Sec. 4 implementation details and Table 1",
            train={
                "model": f"transavs_{_backbone}",
                "task": "binary",
                "max_steps": 90_000,
                "batch_size": 8,
                "lr": 1e-4,
                "backbone_lr_mult": 0.1,
                "size": [224, 224],
                "inference_size": [224, 224],
                "freeze_backbone": False,
                "model_config": dict(_TRANSAVS_MODEL),
            },
            features={"audio": {"encoder": "vggish"}},  # VGGish embeddings, as its baseline (AVSBench)
            paper_j_f=_scores,
        ),
    )


def list_presets() -> list[str]:
    """Names accepted by ``train.preset``."""
    return _PRESETS.names()


def get_preset(name: str) -> Preset:
    """The preset ``name``; ``UnknownNameError`` lists the known ones."""
    return _PRESETS.lookup(name)()


def feature_mismatches(preset: Preset, feature_params: Mapping[str, Any]) -> list[str]:
    """``"proposals.backend is mobile_sam, the preset's row used semantic_sam"`` for each feature setting
    of ``preset`` the shards' records (kind -> params record) differ in."""
    mismatches = []
    for kind, expected in preset.features.items():
        record = feature_params.get(kind)
        if record is None:
            continue
        for key, value in expected.items():
            found = record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)
            if found != value:
                mismatches.append(f"{kind}.{key} is {found!r}, the preset's row used {value!r}")
    return mismatches
