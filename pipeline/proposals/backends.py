"""Registry of class-agnostic proposal backends (``proposals.backend``).

Every backend turns one RGB frame uint8 [H,W,3] into :class:`Proposals`: K boolean masks
[K,H,W] at the frame's size plus K scores (K varies per frame, 0 allowed).

- ``mobile_sam`` (default): official MobileSAM weights, our :class:`FastMaskGenerator`.
- ``sam``: segment-anything ViT-B/L/H from ``proposals.checkpoint`` (never downloaded),
  same generator.
- ``semantic_sam``: Semantic-SAM SwinL (``swinl_only_sam_many2many.pth`` from ``proposals.checkpoint``)
  and its automatic mask generator (level [3], COMBO's settings), both ported to pure PyTorch in
  ``pipeline.proposals.semantic_sam`` (equal to the official code; see docs/semantic_sam.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.hashing import file_sha256
from pipeline.params import params_hash
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.maskige import nearest_resize
from pipeline.proposals.model_files import ProposalModelError, bundled_mobile_sam_checkpoint
from pipeline.registry import Registry

# The models (and torch) are imported by the builders below, when a backend is built: the stage imports this
# module to name the checkpoint, and runs that read COMBO's maskige trees build no backend at all.

SEMANTIC_SAM_CHECKPOINT = (
    "proposals.checkpoint must be set for the semantic_sam backend: download swinl_only_sam_many2many.pth "
    "(Semantic-SAM's release, see docs/semantic_sam.md) and give its path; or use proposals.backend: mobile_sam"
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
    checkpoint: str  # path actually loaded ("" when the model has none)
    checkpoint_sha256: str  # "" when the model has no file

    def propose(self, frame: np.ndarray) -> Proposals: ...


BackendBuilder = Callable[[ProposalParams], ProposalBackend]
_BACKENDS = Registry("proposal backend")


def register_backend(name: str) -> Callable[[BackendBuilder], BackendBuilder]:
    return _BACKENDS.register(name)


def list_backends() -> list[str]:
    return _BACKENDS.names()


def build_backend(name: str, params: ProposalParams) -> ProposalBackend:
    """The backend ``name`` built for ``params`` (``pipeline.registry.UnknownNameError`` for an unknown name)."""
    return _BACKENDS.lookup(name)(params)


_BUILT: dict[str, ProposalBackend] = {}  # params hash -> the backend built in this process


def cached_backend(params: ProposalParams) -> ProposalBackend:
    """The backend for ``params``, built once per process and reused for every video (one model held at a
    time: other params replace it)."""
    key = params_hash(params)
    if key not in _BUILT:
        _BUILT.clear()
        _BUILT[key] = build_backend(params.backend, params)
    return _BUILT[key]


def resolve_checkpoint(params: ProposalParams) -> str:
    """The checkpoint file the backend will load ("" for none), without loading it."""
    if params.backend == "mobile_sam":
        return str(params.checkpoint or bundled_mobile_sam_checkpoint())
    if not params.checkpoint:
        if params.backend == "semantic_sam":
            raise ProposalModelError(SEMANTIC_SAM_CHECKPOINT)
        raise ProposalModelError(f"proposals.checkpoint must be set for the {params.backend} backend")
    return str(params.checkpoint)


class SamFamilyBackend:
    """Any Sam-shaped model + :class:`FastMaskGenerator`."""

    def __init__(self, name: str, model, params: ProposalParams, checkpoint: str) -> None:
        from pipeline.proposals.generator import FastMaskGenerator

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
    from pipeline.proposals.sam_models import build_mobile_sam

    checkpoint = resolve_checkpoint(params)
    model = build_mobile_sam(checkpoint, encoder_size=params.effective_encoder_size())
    return SamFamilyBackend("mobile_sam", model, params, checkpoint)


@register_backend("sam")
def _build_sam_backend(params: ProposalParams) -> ProposalBackend:
    from pipeline.proposals.sam_models import build_sam

    checkpoint = resolve_checkpoint(params)
    model = build_sam(params.model_type, checkpoint, encoder_size=params.effective_encoder_size())
    return SamFamilyBackend("sam", model, params, checkpoint)


class SemanticSamBackend:
    """Semantic-SAM (SwinL many2many) through our pure-PyTorch port (``pipeline.proposals.semantic_sam``):
    no detectron2, no compiled op, CPU or CUDA (optionally bf16/fp16 autocast on CUDA).

    The whole frame goes in at its own size (COMBO's way) unless ``image_short_side`` is set; then it
    is resized (bilinear) and the masks come back NEAREST at the frame's size.
    """

    def __init__(self, params: ProposalParams) -> None:
        import torch

        from pipeline.proposals.semantic_sam import SemanticSamAutomaticMaskGenerator, build_semantic_sam

        self.name = "semantic_sam"
        if not params.checkpoint:
            raise ProposalModelError(SEMANTIC_SAM_CHECKPOINT)
        self.checkpoint = str(params.checkpoint)
        if not _is_file(self.checkpoint):
            raise ProposalModelError(f"{self.checkpoint}: Semantic-SAM checkpoint not found (proposals.checkpoint)")
        self.checkpoint_sha256 = file_sha256(self.checkpoint)
        settings = params.semantic_sam_settings()
        device = settings["device"]
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.short_side = settings["image_short_side"]
        self.precision = settings["precision"]
        try:
            model, _ = build_semantic_sam(self.checkpoint, device=self.device)
        except ValueError as err:
            raise ProposalModelError(str(err)) from None
        self.generator = SemanticSamAutomaticMaskGenerator(model, params.semantic_sam_generator_settings())

    def propose(self, frame: np.ndarray) -> Proposals:
        import torch
        import torch.nn.functional as F

        h, w = frame.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float()
        if self.short_side:
            scale = self.short_side / min(h, w)
            size = (int(round(h * scale)), int(round(w * scale)))
            image = F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0].round().clamp(0, 255)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None and self.device != "cpu"):
            masks, scores = self.generator.generate(image.to(self.device))
        masks = masks.numpy()
        if masks.shape[1:] != (h, w):
            masks = np.stack([nearest_resize(m, (h, w)) for m in masks]) if len(masks) else np.zeros((0, h, w), bool)
        keep = masks.any(axis=(1, 2))
        return Proposals(masks[keep], scores.numpy().astype(np.float32)[keep])


def _is_file(path: str) -> bool:
    from pathlib import Path

    return bool(path) and Path(path).is_file()


@register_backend("semantic_sam")
def _build_semantic_sam_backend(params: ProposalParams) -> ProposalBackend:
    return SemanticSamBackend(params)
