"""Official COMBO checkpoints (yannqi/COMBO-AVS, detectron2 ``model_final.pth``) -> this toolkit's COMBO.

A detectron2 checkpoint is ``{"model": state_dict, "trainer": ..., "iteration": N}`` with
detectron2 / Mask2Former names. :func:`official_to_toolkit_state` renames every entry through
``RENAMES`` (checked against the key lists of the official R50 and PVT-v2-B5 models in
``tests/fixtures/combo/``); ``AUXILIARY_KEYS`` are training-only entries that are dropped. The
first key no rule maps stops the conversion with one line naming it.
:func:`toolkit_checkpoint_from_official` turns the whole file into a toolkit checkpoint (model,
task and classes read from the tensor shapes) that ``build_from_checkpoint`` loads.
"""

from __future__ import annotations

import re
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


def official_model_config(state: dict[str, torch.Tensor], source: str = "checkpoint") -> tuple[str, dict]:
    """(registered model name, config) of the official model whose converted state is ``state``:
    backbone, classes, layers, queries, FFN width and the in-model VGGish read from the shapes."""
    if "siam_encoder.image_backbone.conv1.weight" in state:
        name = "combo_r50"
    elif "siam_encoder.image_backbone.patch_embed1.proj.weight" in state:
        name = "combo_pvt_b5"
    else:
        raise OfficialCheckpointError(f"{source}: backbone neither ResNet-50 nor PVT-v2-B5")

    def count(prefix: str) -> int:
        found = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
        return max(found) + 1 if found else 0

    config = {
        "num_classes": state["decoder.class_embed.weight"].shape[0] - 1,
        "num_queries": state["decoder.query_feat.weight"].shape[0],
        "decoder_layers": count("decoder.ffn."),
        "decoder_ffn": state["decoder.ffn.0.linear1.weight"].shape[0],
        "pixel_decoder_layers": count("pixel_decoder.layers."),
        "official_query_audio": True,
    }
    if not any(k.startswith("audio_encoder.") for k in state):
        config["audio_encoder"] = "precomputed"
    return name, config


def toolkit_checkpoint_from_official(obj: dict, source: str | Path = "checkpoint") -> dict[str, Any]:
    """A toolkit checkpoint (``model_name``, ``model_config``, ``state_dict``, ``step``, ``task``) made
    from a detectron2 COMBO checkpoint ``obj``."""
    state = official_to_toolkit_state(obj["model"], str(source))
    name, config = official_model_config(state, str(source))
    return {
        "model_name": name,
        "model_config": config,
        "state_dict": state,
        "step": int(obj.get("iteration", 0) or 0),
        "task": "binary" if config["num_classes"] == 2 else "semantic",
        "source_format": "detectron2 COMBO (yannqi/COMBO-AVS)",
    }


__all__ = [
    "AUXILIARY_KEYS",
    "OfficialCheckpointError",
    "is_official_combo_checkpoint",
    "official_key_to_toolkit",
    "official_model_config",
    "official_to_toolkit_state",
    "toolkit_checkpoint_from_official",
]
