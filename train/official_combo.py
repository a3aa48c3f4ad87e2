"""Official COMBO checkpoints (yannqi/COMBO-AVS, detectron2 ``model_final.pth``) -> this toolkit's COMBO.

A detectron2 checkpoint is ``{"model": state_dict, "trainer": ..., "iteration": N}`` with
detectron2 / Mask2Former names. :func:`official_to_toolkit_state` renames every entry through
``RENAMES`` (checked against the key lists of the official R50 and PVT-v2-B5 models in
``tests/fixtures/combo/``); ``AUXILIARY_KEYS`` are training-only entries that are dropped. The
first key no rule maps stops the conversion with one line naming it.
:func:`toolkit_checkpoint_from_official` turns the whole file into a toolkit checkpoint that
``build_from_checkpoint`` loads: the registered model and its config (trunk, a narrow ResNet-50's
widths, classes, widths, layers, queries, the in-model VGGish) read from the tensor shapes, scored at
COMBO's 224x224. :class:`ModelFlags` (``--model`` / ``--task`` / ``--num-classes`` of ``avs evaluate``
and ``avs predict``) name what the file does not record; one that contradicts a checkpoint is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Training-only entries of the official state dict: the no-object weight of the loss (ours is
# built from ``no_object_weight``).
AUXILIARY_KEYS: tuple[str, ...] = ("criterion.empty_weight",)

_RESNET_NORM = r"(?P<norm>weight|bias|running_mean|running_var)"
# (official regex, toolkit template), first match wins. ``{backbone}`` is image_backbone or
# maskige_backbone (the official ``backbone`` / ``pre_sam_backbone``).
RENAMES: tuple[tuple[str, str], ...] = (
    # detectron2 ResNet (FrozenBN buffers) -> torchvision layout
    (r"stem\.conv1\.weight", "conv1.weight"),
    (rf"stem\.conv1\.norm\.{_RESNET_NORM}", "bn1.{norm}"),
    (r"res(?P<stage>[2-5])\.(?P<block>\d+)\.conv(?P<conv>[123])\.weight", "layer{stage-1}.{block}.conv{conv}.weight"),
    (
        rf"res(?P<stage>[2-5])\.(?P<block>\d+)\.conv(?P<conv>[123])\.norm\.{_RESNET_NORM}",
        "layer{stage-1}.{block}.bn{conv}.{norm}",
    ),
    (r"res(?P<stage>[2-5])\.(?P<block>\d+)\.shortcut\.weight", "layer{stage-1}.{block}.downsample.0.weight"),
    (
        rf"res(?P<stage>[2-5])\.(?P<block>\d+)\.shortcut\.norm\.{_RESNET_NORM}",
        "layer{stage-1}.{block}.downsample.1.{norm}",
    ),
    # PVT-v2: same names as ours
    (r"(?P<rest>(patch_embed|block|norm)\d.*)", "{rest}"),
)
HEAD_RENAMES: tuple[tuple[str, str], ...] = (
    (r"scale_factor_module\.(?P<stage>[0-3])\.fc1\.(?P<p>weight|bias)", "siam_encoder.fusion.res{stage+2}.mlp.0.{p}"),
    (r"scale_factor_module\.(?P<stage>[0-3])\.fc2\.(?P<p>weight|bias)", "siam_encoder.fusion.res{stage+2}.mlp.2.{p}"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.level_embed", "pixel_decoder.level_embed"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(?P<rest>.+)", "pixel_decoder.layers.{rest}"),
    (r"sem_seg_head\.pixel_decoder\.adapter_1\.weight", "pixel_decoder.lateral_conv.0.weight"),
    (r"sem_seg_head\.pixel_decoder\.adapter_1\.norm\.(?P<p>weight|bias)", "pixel_decoder.lateral_conv.1.{p}"),
    (r"sem_seg_head\.pixel_decoder\.layer_1\.weight", "pixel_decoder.output_conv.0.weight"),
    (r"sem_seg_head\.pixel_decoder\.layer_1\.norm\.(?P<p>weight|bias)", "pixel_decoder.output_conv.1.{p}"),
    (r"sem_seg_head\.pixel_decoder\.(?P<rest>(input_proj|mask_features)\..+)", "pixel_decoder.{rest}"),
    (r"sem_seg_head\.fusion_module\.audio_pos\.weight", "bilateral_fusion.audio_pos_embed"),
    (r"sem_seg_head\.fusion_module\.level_embed\.weight", "bilateral_fusion.level_embed"),
    (r"sem_seg_head\.fusion_module\.b_attn\.gamma_a", "bilateral_fusion.audio_gamma"),
    (r"sem_seg_head\.fusion_module\.b_attn\.gamma_v_list\.0", "bilateral_fusion.visual_gamma"),
    (r"sem_seg_head\.fusion_module\.b_attn\.layer_norm_v_list\.0\.(?P<p>\w+)", "bilateral_fusion.visual_norm.{p}"),
    (r"sem_seg_head\.fusion_module\.b_attn\.layer_norm_a_list\.0\.(?P<p>\w+)", "bilateral_fusion.audio_norm.{p}"),
    (r"sem_seg_head\.fusion_module\.b_attn\.attn_list\.0\.v_proj\.(?P<p>\w+)", "bilateral_fusion.query_proj.{p}"),
    (r"sem_seg_head\.fusion_module\.b_attn\.attn_list\.0\.a_proj\.(?P<p>\w+)", "bilateral_fusion.key_proj.{p}"),
    (
        r"sem_seg_head\.fusion_module\.b_attn\.attn_list\.0\.values_v_proj\.(?P<p>\w+)",
        "bilateral_fusion.visual_value_proj.{p}",
    ),
    (
        r"sem_seg_head\.fusion_module\.b_attn\.attn_list\.0\.values_a_proj\.(?P<p>\w+)",
        "bilateral_fusion.audio_value_proj.{p}",
    ),
    (
        r"sem_seg_head\.fusion_module\.b_attn\.attn_list\.0\.out_v_proj\.(?P<p>\w+)",
        "bilateral_fusion.visual_out_proj.{p}",
    ),
    (
        r"sem_seg_head\.fusion_module\.b_attn\.attn_list\.0\.out_a_proj\.(?P<p>\w+)",
        "bilateral_fusion.audio_out_proj.{p}",
    ),
    (r"sem_seg_head\.audio_transformation\.embeddings\.(?P<layer>[024])\.(?P<p>\w+)", "audio_mlp.layers.{layer/2}.{p}"),
    (
        r"sem_seg_head\.predictor\.transformer_self_attention_layers\.(?P<i>\d+)\.self_attn\.(?P<rest>.+)",
        "decoder.self_attention.{i}.attn.{rest}",
    ),
    (
        r"sem_seg_head\.predictor\.transformer_self_attention_layers\.(?P<i>\d+)\.norm\.(?P<p>\w+)",
        "decoder.self_attention.{i}.norm.{p}",
    ),
    (
        r"sem_seg_head\.predictor\.transformer_cross_attention_layers\.(?P<i>\d+)\.multihead_attn\.(?P<rest>.+)",
        "decoder.cross_attention.{i}.attn.{rest}",
    ),
    (
        r"sem_seg_head\.predictor\.transformer_cross_attention_layers\.(?P<i>\d+)\.norm\.(?P<p>\w+)",
        "decoder.cross_attention.{i}.norm.{p}",
    ),
    (r"sem_seg_head\.predictor\.transformer_ffn_layers\.(?P<rest>.+)", "decoder.ffn.{rest}"),
    (
        r"sem_seg_head\.predictor\.(?P<rest>(decoder_norm|query_feat|query_embed|level_embed|class_embed|mask_embed)\..+)",
        "decoder.{rest}",
    ),
    (r"audio_backbone\.(?P<rest>(features|embeddings)\..+)", "audio_encoder.{rest}"),
)
_BACKBONE_PREFIXES = {
    "backbone.": "siam_encoder.image_backbone.",
    "pre_sam_backbone.": "siam_encoder.maskige_backbone.",
}


class OfficialCheckpointError(ValueError):
    """An official COMBO checkpoint holds an entry this converter does not know."""


def _fill(template: str, match: re.Match) -> str:
    """``template`` with ``{name}``, ``{name+k}``, ``{name-k}`` and ``{name/k}`` filled from ``match``."""

    def value(field: re.Match) -> str:
        name, op, number = field.group(1), field.group(2), field.group(3)
        text = match.group(name)
        if not op:
            return text
        k = int(number)
        return str(int(text) + k if op == "+" else int(text) - k if op == "-" else int(text) // k)

    return re.sub(r"\{(\w+)(?:([+\-/])(\d+))?\}", value, template)


def official_key_to_toolkit(key: str) -> str | None:
    """Our name of the official entry ``key``; None for ``AUXILIARY_KEYS``; KeyError when unknown."""
    if key in AUXILIARY_KEYS:
        return None
    for prefix, ours in _BACKBONE_PREFIXES.items():
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            for pattern, template in RENAMES:
                match = re.fullmatch(pattern, rest)
                if match:
                    return ours + _fill(template, match)
            raise KeyError(key)
    for pattern, template in HEAD_RENAMES:
        match = re.fullmatch(pattern, key)
        if match:
            return _fill(template, match)
    raise KeyError(key)


def official_to_toolkit_state(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename every entry of an official COMBO state dict; auxiliary entries are dropped."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        try:
            ours = official_key_to_toolkit(key)
        except KeyError:
            raise OfficialCheckpointError(f"{source}: no COMBO entry for the official key {key!r}") from None
        if ours is not None:
            converted[ours] = tensor
    return converted


def is_official_combo_checkpoint(obj: Any) -> bool:
    """True for a detectron2 COMBO checkpoint: {"model": {... "sem_seg_head.predictor..." ...}}."""
    model = obj.get("model") if isinstance(obj, dict) else None
    return isinstance(model, dict) and any(str(k).startswith("sem_seg_head.") for k in model)


# The official R50 trunk is a ResNet-50: depths fixed, widths read from the shapes (standard or narrow).
RESNET50_DEPTHS = (3, 4, 6, 3)
STANDARD_RESNET50 = {"widths": [64, 128, 256, 512], "stem_width": 64}
# The input size the official configs test at (AVSBench frames are 224x224): the scoring size of a
# converted checkpoint unless ``evaluate.size`` / ``avs predict --size`` say otherwise.
OFFICIAL_TEST_SIZE = [224, 224]
OFFICIAL_FORMAT = "detectron2 COMBO (yannqi/COMBO-AVS)"  # ``source_format`` of a converted checkpoint
_BACKBONE_OF_FAMILY = {"combo_r50": "resnet50", "combo_pvt_b5": "pvt_v2_b5"}


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of numbered children ``prefix<i>.`` in ``state`` (layers, blocks)."""
    found = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def _resnet_kwargs(state: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """``backbone_kwargs`` of the image trunk: {} for a standard ResNet-50, else its widths; a trunk
    that is not a ResNet-50 (other depths, basic blocks) is refused."""
    prefix = "siam_encoder.image_backbone."
    depths = tuple(_count(state, f"{prefix}layer{i}.") for i in range(1, 5))
    if depths != RESNET50_DEPTHS or f"{prefix}layer1.0.conv3.weight" not in state:
        raise OfficialCheckpointError(
            f"{source}: the ResNet trunk has {list(depths)} blocks per stage"
            f"{'' if f'{prefix}layer1.0.conv3.weight' in state else ' of basic blocks'}: "
            f"only ResNet-50 ({list(RESNET50_DEPTHS)} bottleneck blocks) is built for official checkpoints"
        )
    kwargs = {
        "widths": [int(state[f"{prefix}layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5)],
        "stem_width": int(state[f"{prefix}conv1.weight"].shape[0]),
    }
    return {} if kwargs == STANDARD_RESNET50 else kwargs


def _official_model_name(state: dict[str, torch.Tensor], source: str) -> str:
    if "siam_encoder.image_backbone.conv1.weight" in state:
        return "combo_r50"
    if "siam_encoder.image_backbone.patch_embed1.proj.weight" in state:
        return "combo_pvt_b5"
    raise OfficialCheckpointError(f"{source}: backbone neither ResNet-50 nor PVT-v2-B5")


def _chosen_model(inferred: str, model: str | None, source: str) -> str:
    """``model`` (``--model``) when it is a COMBO with the trunk the weights have, else ``inferred``."""
    if model is None:
        return inferred
    from train.models.registry import model_spec

    spec = model_spec(model)  # an unknown name: UnknownNameError listing the known ones
    backbone = spec.config.get("backbone", "resnet50")
    if spec.builder.__name__ != "build_combo" or backbone != _BACKBONE_OF_FAMILY[inferred]:
        raise OfficialCheckpointError(
            f"--model {model} contradicts {source}: its weights are a COMBO with a "
            f"{_BACKBONE_OF_FAMILY[inferred]} trunk ({model} is a {spec.builder.__name__} with {backbone})"
        )
    return spec.name


def official_model_config(
    state: dict[str, torch.Tensor], source: str = "checkpoint", model: str | None = None
) -> tuple[str, dict]:
    """(registered model name, config) of the official model whose converted state is ``state``:
    backbone (and a narrow ResNet-50's widths), classes, widths, layers, queries, FFN widths, sampling
    points and the in-model VGGish read from the shapes. Head counts are not in the shapes: they are
    the registered model's (``model``, else ``combo_r50`` / ``combo_pvt_b5``; the official 8)."""
    from train.models.registry import model_spec

    family = _official_model_name(state, source)
    name = _chosen_model(family, model, source)
    heads = model_spec(name).resolved_config()["pixel_decoder_heads"]
    levels = _count(state, "pixel_decoder.input_proj.")
    points, rest = divmod(state["pixel_decoder.layers.0.self_attn.attention_weights.weight"].shape[0], heads * levels)
    if rest:
        raise OfficialCheckpointError(
            f"{source}: deformable attention weights do not fit {heads} heads x {levels} levels"
        )
    hidden = [int(state[f"audio_mlp.layers.{i}.weight"].shape[0]) for i in range(_count(state, "audio_mlp.layers."))]
    fusion = state["siam_encoder.fusion.res2.mlp.0.weight"].shape
    config = {
        "num_classes": state["decoder.class_embed.weight"].shape[0] - 1,
        "num_queries": state["decoder.query_feat.weight"].shape[0],
        "hidden_dim": state["decoder.query_feat.weight"].shape[1],
        "audio_dim": state["bilateral_fusion.key_proj.weight"].shape[1],
        "audio_mlp_hidden": hidden[:-1],
        "decoder_layers": _count(state, "decoder.ffn."),
        "decoder_ffn": state["decoder.ffn.0.linear1.weight"].shape[0],
        "pixel_decoder_layers": _count(state, "pixel_decoder.layers."),
        "pixel_decoder_ffn": state["pixel_decoder.layers.0.linear1.weight"].shape[0],
        "pixel_decoder_points": points,
        "fusion_reduction": fusion[1] // fusion[0],
        "shared_backbone": not any(k.startswith("siam_encoder.maskige_backbone.") for k in state),
        "official_query_audio": True,
    }
    trunk = _resnet_kwargs(state, source) if family == "combo_r50" else {}
    if trunk:
        config["backbone_kwargs"] = trunk
    if not any(k.startswith("audio_encoder.") for k in state):
        config["audio_encoder"] = "precomputed"
    return name, config


def toolkit_checkpoint_from_official(
    obj: dict, source: str | Path = "checkpoint", model: str | None = None
) -> dict[str, Any]:
    """A toolkit checkpoint (``model_name``, ``model_config``, ``state_dict``, ``step``, ``task``,
    ``train_params`` with the official test size) made from a detectron2 COMBO checkpoint ``obj``;
    ``model``: the registered COMBO to build (``--model``), checked against the weights."""
    state = official_to_toolkit_state(obj["model"], str(source))
    name, config = official_model_config(state, str(source), model)
    return {
        "model_name": name,
        "model_config": config,
        "state_dict": state,
        "step": int(obj.get("iteration", 0) or 0),
        "task": "binary" if config["num_classes"] == 2 else "semantic",
        "train_params": {"size": list(OFFICIAL_TEST_SIZE)},
        "source_format": OFFICIAL_FORMAT,
    }


@dataclass(frozen=True)
class ModelFlags:
    """What ``avs evaluate`` / ``avs predict`` say about the model (``--model``, ``--task``,
    ``--num-classes``): an official checkpoint records none of it, so the flags choose the registered
    model and confirm what the shapes say; for any checkpoint, a flag that contradicts it is an error."""

    model: str | None = None
    task: str | None = None
    num_classes: int | None = None


def apply_model_flags(ckpt: dict[str, Any], flags: ModelFlags | None, source: str | Path) -> dict[str, Any]:
    """``ckpt`` once ``flags`` agree with it; the first flag that does not is one line naming the flag,
    the file and what the file holds."""
    if flags is None:
        return ckpt
    if flags.model is not None:
        from train.models.registry import model_spec

        if model_spec(flags.model).name != model_spec(ckpt["model_name"]).name:
            raise OfficialCheckpointError(
                f"--model {flags.model} contradicts {source}: it holds a {ckpt['model_name']}"
            )
    classes = _num_classes(ckpt)
    if flags.num_classes is not None and flags.num_classes != classes:
        raise OfficialCheckpointError(
            f"--num-classes {flags.num_classes} contradicts {source}: its class head has {classes} classes"
        )
    task = ckpt.get("task") or ("binary" if classes == 2 else "semantic")
    if flags.task is not None and flags.task != task:
        raise OfficialCheckpointError(
            f"--task {flags.task} contradicts {source}: its class head has {classes} classes ({task})"
        )
    return ckpt


def _num_classes(ckpt: dict[str, Any]) -> int:
    """Classes (background included) of ``ckpt``'s model: its config as built (recorded keys over the
    registered model's; a family that derives them from the task: 2 for binary, 71 for AVSS)."""
    from pipeline.labels import NUM_AVSS_CLASSES
    from train.models.registry import model_spec

    classes = model_spec(ckpt["model_name"]).resolved_config(ckpt["model_config"]).get("num_classes")
    return int(classes or (2 if ckpt.get("task", "binary") == "binary" else NUM_AVSS_CLASSES))


__all__ = [
    "AUXILIARY_KEYS",
    "OFFICIAL_FORMAT",
    "ModelFlags",
    "OfficialCheckpointError",
    "apply_model_flags",
    "is_official_combo_checkpoint",
    "official_key_to_toolkit",
    "official_model_config",
    "official_to_toolkit_state",
    "toolkit_checkpoint_from_official",
]
