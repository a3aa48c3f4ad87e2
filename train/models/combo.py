"""COMBO: COoperation of Multi-order Bilateral relatiOns for audio-visual segmentation
(Yang et al., CVPR 2024).

Per frame (N = B*T frames of B clips with T frames):

1. Siam-Encoder Module (Sec. 3.1, eq. 1-3): image and maskige backbones; at every stage i
   F_vi <- F_vi + F_mi * sigmoid(MLP(GAP(F_mi))) (bottleneck MLP C -> C/16 -> C as in the code).
2. MSDeformAttn pixel decoder -> P_1 (1/4) and P_2..P_4 (1/8, 1/16, 1/32).
3. Bilateral-Fusion Module (Sec. 3.2, eq. 4-5) between P_1 and the frame's audio embedding F_a,
   then an audio MLP (128 -> 4096 -> 4096 -> 256) to the query width.
4. Mask2Former decoder whose learnable queries get the frame's fused audio added ("add", Table 6).
5. Losses (eq. 8): lambda_cls * CE + lambda_mask * (BCE + dice) with deep supervision, plus
   lambda_ada * L_ada (eq. 6-7) on consecutive frames' mask logits of the intermediate layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn

from train.losses.combo_criterion import SetCriterion
from train.losses.matcher import HungarianMatcher
from train.losses.targets import masks_to_targets
from train.losses.temporal import adaptive_inter_frame_loss
from train.models.backbones import STAGE_NAMES, build_backbone
from train.models.bilateral_fusion import BilateralFusion, official_query_audio
from train.models.inference import predict_from_outputs
from train.models.param_groups import split_parameter_groups
from train.models.pixel_decoder import MSDeformAttnPixelDecoder
from train.models.registry import CPU_DEMO_TRAIN, PAPER_TRAIN, TrainDefaults, register_model
from train.models.transformer_decoder import MLP, MaskedAttentionDecoder
from train.models.vggish import VGGISH_EMBEDDING_DIM, load_vggish

# ----------------------------------------------------------------------------------------------
# Siam-Encoder Module
# ----------------------------------------------------------------------------------------------


class ChannelWeightedFusion(nn.Module):
    """Paper eq. 3: F_v + F_m * sigmoid(W2 relu(W1 GAP(F_m))), W1: C->C/r, W2: C/r->C.

    forward(f_visual [N,C,H,W], f_maskige [N,C,H,W]) -> [N,C,H,W].
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, f_visual: torch.Tensor, f_maskige: torch.Tensor) -> torch.Tensor:
        weight = self.mlp(f_maskige.mean(dim=(2, 3)))  # [N,C]
        return f_visual + f_maskige * weight[:, :, None, None]


class SiamEncoder(nn.Module):
    """Image encoder E_v and maskige encoder E_m (eq. 1-2) fused stage-wise (eq. 3).

    ``maskige_backbone=None`` shares the image backbone's weights (paper Table 4, "shared").
    forward(frames [N,3,H,W], maskiges [N,3,H,W]) -> dict res2..res5 [N,C_i,H/2^(i+1),W/2^(i+1)].
    """

    def __init__(
        self, image_backbone: nn.Module, maskige_backbone: nn.Module | None = None, reduction: int = 16
    ) -> None:
        super().__init__()
        self.image_backbone = image_backbone
        self.maskige_backbone = maskige_backbone
        self.out_channels: dict[str, int] = dict(image_backbone.out_channels)
        self.fusion = nn.ModuleDict(
            {name: ChannelWeightedFusion(self.out_channels[name], reduction) for name in STAGE_NAMES}
        )

    def forward(self, frames: torch.Tensor, maskiges: torch.Tensor) -> dict[str, torch.Tensor]:
        visual = self.image_backbone(frames)
        maskige_encoder = self.image_backbone if self.maskige_backbone is None else self.maskige_backbone
        maskige = maskige_encoder(maskiges)
        return {name: self.fusion[name](visual[name], maskige[name]) for name in STAGE_NAMES}


# ----------------------------------------------------------------------------------------------
# Bilateral-Fusion Module
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# COMBO model
# ----------------------------------------------------------------------------------------------


COMBO_NO_DECAY_NAME_PARTS = ("pos_embed", "level_embed", "query_feat", "query_embed")


class COMBO(nn.Module):
    """COMBO audio-visual segmentation model with the toolkit's common model interface.

    forward(batch) with batch["frames"], batch["maskiges"] float [B,T,3,H,W] and either
    batch["audio"] float [B,T,D] (precomputed embeddings) or batch["logmel"] float [B,T,96,64]
    (``audio_encoder`` = frozen VGGish) ->
        {"pred_logits": [B,T,Q,K+1], "pred_masks": [B,T,Q,H/4,W/4],
         "aux_outputs": list of dicts with the same keys (earlier decoder layers)}
    """

    def __init__(
        self,
        siam_encoder: SiamEncoder,
        pixel_decoder: MSDeformAttnPixelDecoder,
        bilateral_fusion: BilateralFusion,
        audio_mlp: MLP,
        decoder: MaskedAttentionDecoder,
        criterion: SetCriterion,
        num_classes: int,
        audio_encoder: nn.Module | None = None,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        lambda_ada: float = 10.0,
        official_query_audio: bool = True,
    ) -> None:
        super().__init__()
        self.official_query_audio = official_query_audio
        self.siam_encoder = siam_encoder
        self.pixel_decoder = pixel_decoder
        self.bilateral_fusion = bilateral_fusion
        self.audio_mlp = audio_mlp
        self.decoder = decoder
        self.criterion = criterion
        self.audio_encoder = audio_encoder
        if audio_encoder is not None:
            audio_encoder.requires_grad_(False)
            audio_encoder.eval()
        self.num_classes = num_classes
        self.audio_dim = bilateral_fusion.audio_norm.normalized_shape[0]  # D of batch["audio"]
        self.task = "binary" if num_classes == 2 else "semantic"
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.lambda_ada = lambda_ada

    def train(self, mode: bool = True) -> COMBO:
        super().train(mode)
        if self.audio_encoder is not None:
            self.audio_encoder.eval()  # frozen VGGish stays in inference mode
        return self

    # -- forward ---------------------------------------------------------------------------------

    def encode_audio(self, batch: dict) -> torch.Tensor:
        """Audio embedding per frame [B,T,D] from batch["audio"] or (VGGish) batch["logmel"]."""
        if self.audio_encoder is not None:
            if "logmel" not in batch:
                raise KeyError("COMBO with audio_encoder='vggish' needs batch['logmel'] [B,T,96,64]")
            logmel = batch["logmel"]
            b, t = logmel.shape[:2]
            with torch.no_grad():
                return self.audio_encoder(logmel.reshape(b * t, *logmel.shape[2:])).reshape(b, t, -1)
        if "audio" not in batch:
            raise KeyError("COMBO with precomputed audio needs batch['audio'] [B,T,D]")
        return batch["audio"]

    def forward(self, batch: dict) -> dict:
        frames = batch["frames"]
        b, t = frames.shape[:2]
        maskiges = batch["maskiges"]
        audio = self.encode_audio(batch).to(frames.dtype)  # [B,T,D]
        features = self.siam_encoder(frames.flatten(0, 1), maskiges.flatten(0, 1))
        mask_features, multi_scale = self.pixel_decoder(features)
        # One audio token per frame; BFM runs per frame on P_1 [N,C,H/4,W/4].
        mask_features, audio_tokens = self.bilateral_fusion(mask_features, audio.flatten(0, 1).unsqueeze(1))
        # Paper: frame t's fused audio is added to every query of frame t ([N,1,C] broadcast over
        # Q); official (default): official_query_audio's pairing across the batch's frames.
        audio_queries = self.audio_mlp(audio_tokens)
        if self.official_query_audio:  # the published checkpoints' query/audio pairing
            audio_queries = official_query_audio(audio_queries, self.decoder.query_feat.num_embeddings)
        decoded = self.decoder(multi_scale, mask_features, query_add=audio_queries)

        def per_clip(prediction: dict) -> dict:
            return {
                key: value.reshape(b, t, *value.shape[1:])
                for key, value in prediction.items()
                if key in ("pred_logits", "pred_masks")
            }

        outputs = per_clip(decoded)
        outputs["aux_outputs"] = [per_clip(aux) for aux in decoded["aux_outputs"]]
        return outputs

    # -- losses ----------------------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[str, ...]:
        """Batch keys the model reads: frames, maskiges and precomputed audio (or log-mel for VGGish)."""
        return ("frames", "maskiges", "logmel" if self.audio_encoder is not None else "audio")

    def compute_losses(self, outputs: dict, batch: dict, step: int = 0) -> dict[str, torch.Tensor]:
        """Paper eq. 8. Returns weighted terms summed over decoder layers:
        {"ce": lambda_cls*L_ce, "bce": lambda_mask*L_bce, "dice": lambda_mask*L_dice,
         "ada": lambda_ada*L_ada, "total": their sum}.

        Supervised terms use only frames with batch["labelled"]; L_ada uses all consecutive frames
        of the intermediate layers (``aux_outputs``), not the final prediction. ``step`` is unused
        (COMBO's losses do not change over training); it is part of the common interface.
        """
        gt = batch["masks"]
        b, t = gt.shape[:2]
        labelled = batch.get("labelled")
        labelled = torch.ones(b, t, dtype=torch.bool) if labelled is None else labelled.bool()
        frame_ids = labelled.reshape(-1).nonzero().flatten().tolist()
        flat_gt = gt.reshape(b * t, *gt.shape[2:])
        targets = [masks_to_targets(flat_gt[i], self.num_classes) for i in frame_ids]
        layers = [*outputs["aux_outputs"], outputs]
        zero = outputs["pred_logits"].sum() * 0.0
        ce = bce = dice = zero
        if frame_ids:
            index = torch.as_tensor(frame_ids, device=outputs["pred_logits"].device)
            for layer in layers:
                terms = self.criterion(
                    layer["pred_logits"].flatten(0, 1)[index], layer["pred_masks"].flatten(0, 1)[index], targets
                )
                ce, bce, dice = ce + terms["ce"], bce + terms["bce"], dice + terms["dice"]
        ada = zero
        for layer in outputs["aux_outputs"]:
            ada = ada + adaptive_inter_frame_loss(layer["pred_masks"])
        losses = {
            "ce": self.class_weight * ce,
            "bce": self.mask_weight * bce,
            "dice": self.dice_weight * dice,
            "ada": self.lambda_ada * ada,
        }
        losses["total"] = losses["ce"] + losses["bce"] + losses["dice"] + losses["ada"]
        return losses

    # -- inference -------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, outputs: dict, size: tuple[int, int]) -> torch.Tensor:
        """Binary: foreground probability [B,T,H,W]; semantic: class scores [B,T,K,H,W]."""
        return predict_from_outputs(outputs["pred_logits"], outputs["pred_masks"], tuple(size), self.task)

    # -- optimiser -------------------------------------------------------------------------------

    def backbone_parameter_names(self) -> set[str]:
        return {
            f"siam_encoder.{name}"
            for name, _ in self.siam_encoder.named_parameters()
            if name.startswith(("image_backbone.", "maskige_backbone."))
        }

    def parameter_groups(
        self, lr: float = 1e-4, weight_decay: float = 0.05, backbone_lr_mult: float = 0.1
    ) -> list[dict]:
        """AdamW parameter groups: backbones at lr * backbone_lr_mult; no weight decay on norms,
        biases, 1-D parameters (layer scales), embeddings and learnable queries / positional
        embeddings; frozen parameters (VGGish) are left out."""
        return split_parameter_groups(
            self,
            self.backbone_parameter_names(),
            lr,
            weight_decay,
            backbone_lr_mult,
            no_decay_name_parts=COMBO_NO_DECAY_NAME_PARTS,
        )


# ----------------------------------------------------------------------------------------------
# Builder and registered configs
# ----------------------------------------------------------------------------------------------


def build_combo(
    backbone: str = "resnet50",
    pretrained: str | None = None,
    backbone_kwargs: dict | None = None,
    shared_backbone: bool = False,
    num_classes: int = 2,
    audio_dim: int = 128,
    audio_encoder: str = "precomputed",
    vggish_weights: str | None = None,
    hidden_dim: int = 256,
    pixel_decoder_layers: int = 6,
    pixel_decoder_heads: int = 8,
    pixel_decoder_ffn: int = 1024,
    pixel_decoder_points: int = 4,
    decoder_layers: int = 9,
    num_queries: int = 100,
    decoder_heads: int = 8,
    decoder_ffn: int = 2048,
    fusion_reduction: int = 16,
    bfm_heads: int = 8,
    bfm_layer_scale: float = 1e-4,
    audio_mlp_hidden: Sequence[int] = (4096, 4096),
    class_weight: float = 2.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
    no_object_weight: float = 0.1,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    lambda_ada: float | None = None,
    official_fusion: bool = True,
    official_query_audio: bool = True,
    bfm_dropout: float = 0.1,
) -> COMBO:
    """Assemble a COMBO model. Defaults are the paper's ResNet-50 config (Sec. 4.2).

    ``num_classes``: 2 for binary datasets (S4/MS3: background, foreground), 71 for AVSS.
    ``audio_encoder``: "precomputed" (batch["audio"] [B,T,audio_dim]) or "vggish" (frozen VGGish on
    batch["logmel"]; ``vggish_weights`` = path of ``vggish-10086976.pth``; audio_dim is then 128).
    ``lambda_ada``: defaults to 10 for binary and 5 for semantic datasets (paper Sec. 4.2).
    ``official_fusion`` / ``official_query_audio``: compute the BFM and the audio queries as the
    official code does (default; needed by its checkpoints) or as the paper's text reads
    (docs/models.md lists the differences).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + objects), got {num_classes}")
    backbone_kwargs = dict(backbone_kwargs or {})
    image_backbone = build_backbone(backbone, pretrained=pretrained, **backbone_kwargs)
    maskige_backbone = None
    if not shared_backbone:  # same ImageNet init, separate weights (COMBO default)
        maskige_backbone = build_backbone(backbone, pretrained=pretrained, **backbone_kwargs)
    siam = SiamEncoder(image_backbone, maskige_backbone, fusion_reduction)

    encoder: nn.Module | None = None
    if audio_encoder == "vggish":
        if audio_dim != VGGISH_EMBEDDING_DIM:
            raise ValueError(f"audio_encoder='vggish' gives {VGGISH_EMBEDDING_DIM}-d audio, got audio_dim={audio_dim}")
        if vggish_weights is None:
            warnings.warn(
                "COMBO: VGGish built without weights (vggish_weights=None); its audio features are random", stacklevel=2
            )
        encoder = load_vggish(vggish_weights)
    elif audio_encoder != "precomputed":
        raise ValueError(f"audio_encoder must be 'precomputed' or 'vggish', got {audio_encoder!r}")

    pixel_decoder = MSDeformAttnPixelDecoder(
        siam.out_channels,
        hidden_dim=hidden_dim,
        num_layers=pixel_decoder_layers,
        num_heads=pixel_decoder_heads,
        num_points=pixel_decoder_points,
        ffn_dim=pixel_decoder_ffn,
        position_offset=0.0,
    )
    fusion = BilateralFusion(
        visual_dim=hidden_dim,
        audio_dim=audio_dim,
        embed_dim=hidden_dim,
        num_heads=bfm_heads,
        layer_scale_init=bfm_layer_scale,
        dropout=bfm_dropout,
        official=official_fusion,
    )
    audio_mlp = MLP(audio_dim, tuple(audio_mlp_hidden), hidden_dim)
    decoder = MaskedAttentionDecoder(
        num_classes,
        hidden_dim=hidden_dim,
        num_queries=num_queries,
        num_heads=decoder_heads,
        ffn_dim=decoder_ffn,
        num_layers=decoder_layers,
        position_offset=0.0,
    )
    matcher = HungarianMatcher(class_weight, mask_weight, dice_weight, num_points=num_points)
    criterion = SetCriterion(
        num_classes, matcher, no_object_weight, num_points, oversample_ratio, importance_sample_ratio
    )
    if lambda_ada is None:
        lambda_ada = 10.0 if num_classes == 2 else 5.0
    return COMBO(
        siam,
        pixel_decoder,
        fusion,
        audio_mlp,
        decoder,
        criterion,
        num_classes,
        encoder,
        class_weight,
        mask_weight,
        dice_weight,
        lambda_ada,
        official_query_audio,
    )


# COMBO's configs (configs/avs_s4/R50-AVSS4-SemanticSegmentation.yaml in yannqi/COMBO-AVS) train with
# PAPER_TRAIN; 20k iterations for MS3 and AMP for AVSS are set by the presets (train/models/presets.py).
DEMO_TRAIN = CPU_DEMO_TRAIN

register_model(
    "combo_r50",
    build_combo,
    config=dict(backbone="resnet50", audio_encoder="vggish"),
    train=PAPER_TRAIN,
    description="Paper config: ResNet-50 siam encoder (separate weights), 6-layer MSDeformAttn pixel decoder, "
    "9-layer decoder with 100 queries, in-model frozen VGGish (158.9 M parameters, Table 4)",
)
register_model(
    "combo_pvt_b5",
    build_combo,
    config=dict(backbone="pvt_v2_b5", audio_encoder="vggish"),
    train=PAPER_TRAIN,
    description="Paper config with the PVT-v2-B5 siam encoder",
)
register_model(
    "combo_swin_b",
    build_combo,
    config=dict(backbone="swin_b", audio_encoder="vggish"),
    train=PAPER_TRAIN,
    description="Paper settings with a Swin-B siam encoder (not in the COMBO paper; TransAVS's Swin-B)",
)
register_model(
    "combo_mnv2",
    build_combo,
    config=dict(
        backbone="mobilenet_v2",
        pretrained="imagenet",
        hidden_dim=64,
        pixel_decoder_layers=2,
        pixel_decoder_heads=4,
        pixel_decoder_ffn=256,
        decoder_layers=3,
        num_queries=16,
        decoder_heads=4,
        decoder_ffn=256,
        bfm_heads=4,
        audio_mlp_hidden=(256,),
        num_points=3136,
    ),
    train=DEMO_TRAIN,
    description="Demo config that trains on 2 CPU cores: ImageNet MobileNetV2 siam encoder (offline weights), "
    "hidden 64, 2 pixel-decoder layers, 3 decoder layers (one round over 3 scales), 16 queries, precomputed "
    "audio embeddings, audio MLP audio_dim -> 256 -> 64. Use 112x112 or 224x224 clips",
)
register_model(
    "combo_tiny",
    build_combo,
    config=dict(
        backbone="resnet18_small",
        hidden_dim=32,
        audio_dim=16,
        pixel_decoder_layers=1,
        pixel_decoder_heads=4,
        pixel_decoder_ffn=64,
        pixel_decoder_points=2,
        decoder_layers=3,
        num_queries=8,
        decoder_heads=4,
        decoder_ffn=64,
        bfm_heads=4,
        audio_mlp_hidden=(32,),
        num_points=256,
    ),
    train=TrainDefaults(max_steps=1000, batch_size=4),  # tests set what they need
    description="Test config: small ResNet-18 (8..32 channels), hidden 32, 1 pixel-decoder layer, 3 decoder "
    "layers, 8 queries, 16-d precomputed audio, 256 sampled points. Inputs of 32x32 or more",
)


__all__ = [
    "COMBO",
    "DEMO_TRAIN",
    "PAPER_TRAIN",
    "BilateralFusion",
    "ChannelWeightedFusion",
    "SiamEncoder",
    "build_combo",
    "official_query_audio",
]
