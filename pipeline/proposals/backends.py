"""Registry of class-agnostic proposal backends (``proposals.backend``).

Every backend turns one RGB frame uint8 [H,W,3] into :class:`Proposals`: K boolean masks
[K,H,W] at the frame's size plus K scores (K varies per frame, 0 allowed).

- ``mobile_sam`` (default): official MobileSAM weights, our :class:`FastMaskGenerator`.
- ``sam``: segment-anything ViT-B/L/H from ``proposals.checkpoint`` (never downloaded),
  same generator.
- ``semantic_sam``: Semantic-SAM's own ``SemanticSamAutomaticMaskGenerator`` (level [3],
  COMBO's setting); the ``semantic_sam`` package is imported only when this backend is built.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from pipeline.proposals.config import ProposalParams
from pipeline.proposals.generator import FastMaskGenerator
from pipeline.proposals.maskige import nearest_resize
from pipeline.proposals.models import (
    ProposalModelError,
    build_mobile_sam,
    build_sam,
    bundled_mobile_sam_checkpoint,
    file_sha256,
)
from pipeline.registry import Registry

SEMANTIC_SAM_INSTALL = (
    "the semantic_sam backend needs Semantic-SAM, which is not installed: clone "
    "https://github.com/UX-Decoder/Semantic-SAM, follow its install notes (detectron2 and its CUDA "
    "MultiScaleDeformableAttention op, GPU only), put its folder on PYTHONPATH so that `import semantic_sam` "
    "works, download swinl_only_sam_many2many.pth and set proposals.checkpoint to it; or use "
    "proposals.backend: mobile_sam"
)


@dataclass
class Proposals:
    """masks bool [K,H,W] (frame size), scores float32 [K]."""

    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise ValueError(f"proposal masks must be bool [K,H,W], got {self.masks.dtype} {list(self.masks.shape)}")
        if self.scores.shape != (self.masks.shape[0],):
            raise ValueError(f"{self.masks.shape[0]} masks but scores of shape {list(self.scores.shape)}")


class ProposalBackend(Protocol):
    name: str
    checkpoint: str            # path actually loaded ("" when the model has none)
    checkpoint_sha256: str     # "" when the model has no file

    def propose(self, frame: np.ndarray) -> Proposals: ...


BackendBuilder = Callable[[ProposalParams], ProposalBackend]
_BACKENDS = Registry("proposal backend")


def register_backend(name: str) -> Callable[[BackendBuilder], BackendBuilder]:
    return _BACKENDS.register(name)


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def build_backend(name: str, params: ProposalParams) -> ProposalBackend:
    if name not in _BACKENDS:
        raise ValueError(f"proposals.backend must be one of {list_backends()}, got {name!r}")
    return _BACKENDS[name](params)


def resolve_checkpoint(params: ProposalParams) -> str:
    """The checkpoint file the backend will load ("" for none), without loading it."""
    if params.backend == "mobile_sam":
        return str(params.checkpoint or bundled_mobile_sam_checkpoint())
    if not params.checkpoint:
        raise ProposalModelError(f"proposals.checkpoint must be set for the {params.backend} backend")
    return str(params.checkpoint)


class SamFamilyBackend:
    """Any Sam-shaped model + :class:`FastMaskGenerator`."""

    def __init__(self, name: str, model, params: ProposalParams, checkpoint: str) -> None:
        self.name = name
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = file_sha256(checkpoint) if checkpoint else ""
        self.generator = FastMaskGenerator(model, params.generator_settings())

    def propose(self, frame: np.ndarray) -> Proposals:
        masks, scores = self.generator.generate(frame)
        return Proposals(masks, scores)


@register_backend("mobile_sam")
def _build_mobile_sam_backend(params: ProposalParams) -> ProposalBackend:
    if params.model_type != "vit_t":
        raise ValueError(f"the mobile_sam backend has model_type vit_t only, got {params.model_type!r}")
    checkpoint = resolve_checkpoint(params)
    model = build_mobile_sam(checkpoint, encoder_size=params.effective_encoder_size())
    return SamFamilyBackend("mobile_sam", model, params, checkpoint)


@register_backend("sam")
def _build_sam_backend(params: ProposalParams) -> ProposalBackend:
    checkpoint = resolve_checkpoint(params)
    model = build_sam(params.model_type, checkpoint, encoder_size=params.effective_encoder_size())
    return SamFamilyBackend("sam", model, params, checkpoint)


class SemanticSamBackend:
    """Adapter over Semantic-SAM's documented API::

        from semantic_sam import build_semantic_sam, SemanticSamAutomaticMaskGenerator
        model = build_semantic_sam(model_type="L", ckpt=path)
        generator = SemanticSamAutomaticMaskGenerator(model, level=[3], points_per_side=32, ...)
        records = generator.generate(image)  # image: tensor [3,h,w] of 0..255 values on the model's device
        # records: list of dicts with "segmentation" bool [h,w] and "predicted_iou"

    The frame is resized (bilinear) so that its short side is ``image_short_side`` (Semantic-SAM's
    ``prepare_image`` uses 640), and the masks are resized back NEAREST to the frame.
    """

    def __init__(self, params: ProposalParams, module: Any | None = None) -> None:
        import torch

        self.name = "semantic_sam"
        module = module if module is not None else import_semantic_sam()
        self.checkpoint = resolve_checkpoint(params)
        if not _is_file(self.checkpoint):
            raise ProposalModelError(f"{self.checkpoint}: Semantic-SAM checkpoint not found (proposals.checkpoint)")
        self.checkpoint_sha256 = file_sha256(self.checkpoint)
        settings = params.semantic_sam_settings()
        device = settings.pop("device")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.short_side = int(settings.pop("image_short_side"))
        model = module.build_semantic_sam(model_type=params.model_type, ckpt=self.checkpoint)
        if hasattr(model, "to"):
            model = model.to(device)
        self.generator = module.SemanticSamAutomaticMaskGenerator(model, **settings)

    def propose(self, frame: np.ndarray) -> Proposals:
        import torch
        import torch.nn.functional as F

        h, w = frame.shape[:2]
        scale = self.short_side / min(h, w)
        size = (int(round(h * scale)), int(round(w * scale)))
        image = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
        image = F.interpolate(image, size, mode="bilinear", align_corners=False).round().clamp(0, 255)[0]
        records = self.generator.generate(image.to(self.device))
        if not records:
            return Proposals(np.zeros((0, h, w), bool), np.zeros(0, np.float32))
        masks = np.stack([nearest_resize(np.asarray(r["segmentation"], dtype=bool), (h, w)) for r in records])
        scores = np.array([float(r.get("predicted_iou", 1.0)) for r in records], dtype=np.float32)
        nonempty = masks.reshape(len(masks), -1).any(1)
        return Proposals(masks[nonempty], scores[nonempty])


def _is_file(path: str) -> bool:
    from pathlib import Path

    return bool(path) and Path(path).is_file()


def import_semantic_sam():
    try:
        return importlib.import_module("semantic_sam")
    except ImportError as err:
        raise ProposalModelError(SEMANTIC_SAM_INSTALL) from err


@register_backend("semantic_sam")
def _build_semantic_sam_backend(params: ProposalParams) -> ProposalBackend:
    return SemanticSamBackend(params)


@register_backend("precomputed")
def _build_precomputed_backend(params: ProposalParams) -> ProposalBackend:
    # COMBO's published maskige PNGs, read per video by precomputed.precomputed_shard (imported here
    # lazily: that module imports the shard machinery).
    from pipeline.proposals.precomputed import PrecomputedBackend

    return PrecomputedBackend(params)
