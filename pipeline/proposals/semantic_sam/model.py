"""The Semantic-SAM model: Swin backbone -> deformable encoder -> interactive decoder.

State-dict keys equal the official model's (``BaseModel.model``), i.e. a released checkpoint's keys
with the ``model.`` prefix stripped, except :data:`SKIPPED_KEYS` (open-vocabulary class heads the
point-prompt path never reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.proposals.semantic_sam.config import PIXEL_MEAN, PIXEL_STD, SWINL, SemanticSamConfig
from pipeline.proposals.semantic_sam.decoder import IMaskDINODecoder
from pipeline.proposals.semantic_sam.encoder import MaskDINOEncoder
from pipeline.proposals.semantic_sam.swin import SwinTransformer
from pipeline.torch_files import TorchFileError, load_torch_file

# Official parameters this port does not build (text / class heads, unused for class-agnostic masks).
SKIPPED_KEYS = (
    "sem_seg_head.predictor.lang_mapper",
    "sem_seg_head.predictor.class_embed",
    "sem_seg_head.predictor.class_embed_part",
)


class SemanticSamHead(nn.Module):
    def __init__(self, pixel_decoder: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


@dataclass
class ImageFeatures:
    """Encoder output of one image: mask features [1,C,Hp/4,Wp/4], 4 multi-scale maps, sizes."""

    mask_features: torch.Tensor
    multi_scale: list[torch.Tensor]
    image_size: tuple[int, int]  # (h, w) before padding
    padded_size: tuple[int, int]  # (Hp, Wp), multiples of 32
    extra: dict = field(default_factory=dict)


class SemanticSam(nn.Module):
    def __init__(self, cfg: SemanticSamConfig = SWINL) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = SwinTransformer(cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.window_size)
        pixel_decoder = MaskDINOEncoder(
            self.backbone.num_features,
            cfg.conv_dim,
            cfg.mask_dim,
            cfg.nheads,
            cfg.dim_feedforward,
            cfg.enc_layers,
            cfg.total_levels,
            cfg.n_points,
        )
        predictor = IMaskDINODecoder(
            cfg.conv_dim,
            cfg.mask_dim,
            cfg.nheads,
            cfg.dim_feedforward,
            cfg.dec_layers,
            cfg.total_levels,
            cfg.n_points,
            cfg.num_mask_tokens,
        )
        self.sem_seg_head = SemanticSamHead(pixel_decoder, predictor)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """image [3,h,w] of 0..255 RGB -> normalised [1,3,Hp,Wp], zero-padded bottom/right to a multiple of 32."""
        x = (image.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        d = self.cfg.size_divisibility
        h, w = x.shape[-2:]
        return F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d))[None]

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> ImageFeatures:
        """Backbone + encoder of one image [3,h,w] (0..255)."""
        x = self.preprocess(image)
        feats = self.backbone(x)
        mask_features, multi_scale = self.sem_seg_head.pixel_decoder.forward_features(feats)
        return ImageFeatures(mask_features, multi_scale, tuple(image.shape[-2:]), tuple(x.shape[-2:]))

    @torch.no_grad()
    def predict_points(
        self, features: ImageFeatures, points: torch.Tensor, tokens: list[int] | None = None, upsample: bool = False
    ):
        """points [N,2] (x, y in [0,1] of the image) -> (mask logits [N*T, H/4, W/4] padded grid, raw IoU [N*T]).

        All N points are decoded together (their queries attend to each other, as in the official
        generator, so N changes the results). With ``upsample`` the logits are resized to the image.
        """
        h, w = features.image_size
        ph, pw = features.padded_size
        pts = points.to(self.device, torch.float32)
        boxes = torch.cat([pts, pts.new_full((len(pts), 2), 0.005)], -1)
        boxes = (
            boxes
            * torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
            / torch.tensor([pw, ph, pw, ph], dtype=torch.float32, device=self.device)
        )
        masks, iou = self.sem_seg_head.predictor(features.multi_scale, features.mask_features, boxes[None], tokens)
        masks, iou = masks[0], iou[0]
        if upsample:
            masks = upsample_masks(masks, features)
        return masks, iou


def upsample_masks(masks: torch.Tensor, features: ImageFeatures) -> torch.Tensor:
    """[K,H/4,W/4] logits -> [K,h,w]: bilinear to the padded size, then the image crop (official order)."""
    if len(masks) == 0:
        return masks.new_zeros((0, *features.image_size))
    up = F.interpolate(masks[None].float(), size=features.padded_size, mode="bilinear", align_corners=False)[0]
    h, w = features.image_size
    return up[:, :h, :w]


@dataclass
class LoadReport:
    missing: list[str]  # our keys absent from the checkpoint
    unexpected: list[str]  # checkpoint keys we have no place for (SKIPPED_KEYS excluded)
    skipped: list[str]  # checkpoint keys in SKIPPED_KEYS


def checkpoint_state_dict(obj) -> dict[str, torch.Tensor]:
    """A released checkpoint ({"model": ...} or flat, keys "model.*") -> state dict without the prefix."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if any(k.startswith("model.") for k in obj):
        obj = {k[len("model.") :]: v for k, v in obj.items() if k.startswith("model.")}
    return dict(obj)


def load_semantic_sam_state(model: SemanticSam, state: dict[str, torch.Tensor]) -> LoadReport:
    """Load key for key (shapes must match); return what was missing / unexpected / skipped."""
    own = model.state_dict()
    skipped = sorted(k for k in state if k.startswith(SKIPPED_KEYS))
    unexpected = sorted(k for k in state if k not in own and k not in skipped)
    # relative_position_index is a derived buffer: recomputed when a checkpoint leaves it out
    missing = sorted(k for k in own if k not in state and not k.endswith("relative_position_index"))
    bad = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if bad:
        raise ValueError(f"checkpoint shapes differ from the Semantic-SAM model: {bad[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return LoadReport(missing, unexpected, skipped)


def config_from_state_dict(state: dict[str, torch.Tensor]) -> SemanticSamConfig:
    """Architecture read off the weights' shapes (SwinL, SwinT or a reduced test model).

    Heads per stage follow Swin's rule (width / 32) unless the bias tables say otherwise; decoder
    heads (8) and sampling points (4) are the released models' values.
    """
    try:
        embed = state["backbone.patch_embed.proj.weight"].shape[0]
        stages = sorted({int(k.split(".")[2]) for k in state if k.startswith("backbone.layers.")})
        depths = tuple(
            len({k.split(".")[4] for k in state if k.startswith(f"backbone.layers.{i}.blocks.")}) for i in stages
        )
        tables = [state[f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in stages]
        window = (int(round(tables[0].shape[0] ** 0.5)) + 1) // 2
        enc = {k.split(".")[5] for k in state if k.startswith("sem_seg_head.pixel_decoder.transformer.encoder.layers.")}
        dec = {k.split(".")[4] for k in state if k.startswith("sem_seg_head.predictor.decoder.layers.")}
        levels, conv_dim = state["sem_seg_head.pixel_decoder.transformer.level_embed"].shape
        return SemanticSamConfig(
            embed_dim=embed,
            depths=depths,
            num_heads=tuple(t.shape[1] for t in tables),
            window_size=window,
            conv_dim=conv_dim,
            mask_dim=state["sem_seg_head.pixel_decoder.mask_features.weight"].shape[0],
            enc_layers=len(enc),
            dec_layers=len(dec),
            total_levels=levels,
            dim_feedforward=state["sem_seg_head.predictor.decoder.layers.0.linear1.weight"].shape[0],
            num_mask_tokens=state["sem_seg_head.predictor.mask_tokens.weight"].shape[0],
        )
    except (KeyError, IndexError) as err:
        raise ValueError(f"not a Semantic-SAM state dict (no {err})") from err


def build_semantic_sam(
    checkpoint: str | Path | None, cfg: SemanticSamConfig | None = None, device: str = "cpu"
) -> tuple[SemanticSam, LoadReport | None]:
    """Model in eval mode on ``device``; with a checkpoint, its weights (report of the key match).

    ``cfg`` None: read from the checkpoint (SwinL without one).
    """
    report = None
    if checkpoint is None:
        return SemanticSam(cfg or SWINL).eval().to(device), report
    try:
        state = checkpoint_state_dict(load_torch_file(checkpoint, "Semantic-SAM checkpoint", allow_numpy=True))
    except TorchFileError as err:
        raise ValueError(str(err)) from None
    try:
        cfg = cfg or config_from_state_dict(state)
    except ValueError as err:
        raise ValueError(f"{checkpoint}: {err}") from None
    model = SemanticSam(cfg)
    try:
        report = load_semantic_sam_state(model, state)
    except ValueError as err:
        raise ValueError(f"{checkpoint}: {err}") from None
    if report.missing:
        raise ValueError(
            f"{checkpoint}: not a complete Semantic-SAM checkpoint, "
            f"{len(report.missing)} keys missing (e.g. {report.missing[0]})"
        )
    return model.eval().to(device), report
