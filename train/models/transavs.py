"""TransAVS (Ling et al., "TransAVS: End-to-end audio-visual segmentation with transformer", 2023).

Equation numbers refer to that paper (Sec. 2). Data flow for a clip of T frames::

    audio  [B,T,D] --Linear(D,d)--> F_a [B,T,d] --W_1 per frame (eq. 1)--> A_q^0 [B,T,N,d]
           --N_1 self-attention layers (eq. 2-3)--> A_q [B,T,N,d] --h--> h(A_q) (AQDL, eq. 10)
    frames [B,T,3,H,W] --backbone--> res2..res5 --pixel decoder--> f_v^1, f_v^2, f_v^3
           (1/32, 1/16, 1/8) and W_2 f_v^4 (1/4, before upsampling; see choice 2)
    A_q (per frame) --N_2 cross-attention layers over f_v^1..3 round robin (eq. 4-6)--> F_av
    M = sigmoid(F_av W_2 f_v^4) (eq. 7),  P = softmax(g(F_av)) over K classes + "no object" (eq. 8)

The losses (eq. 9-13, 18) live in train/losses/transavs_losses.py; inference (eq. 14-15) is
``TransAVS.predict``.

Interpretation choices (the paper leaves these open; each is listed with its reason)
-----------------------------------------------------------------------------------
1. Scales. The paper writes f_v^i with stride 2^(4-i) (1/8, 1/4, 1/2) and f_v^4 at full
   resolution. No standard backbone has a stride-2 feature, and the rest of the design (three
   scales visited round robin, a 1x1 conv W_2 on the finest map) is Mask2Former's. So
   f_v^1, f_v^2, f_v^3 are the multi-scale outputs of the MSDeformAttn pixel decoder at
   1/32, 1/16, 1/8 (coarse to fine, the paper's order of increasing resolution), and the
   finest decoder map (f_v^3 upsampled to 1/4 and fused with res2, Mask2Former's FPN step) is
   f_v^4 before its final upsampling to H x W.
2. W_2 is the pixel decoder's final 1x1 convolution (``mask_features``, with mask_dim = d).
   W_2 f_v^4 is computed at 1/4 resolution; the masks of eq. 7 at H_v x W_v are the bilinear
   upsampling of the 1/4-resolution logits. This is exact, not an approximation: bilinear
   interpolation is linear with weights summing to 1, so it commutes with the per-pixel affine
   map W_2 (bias included) and with the dot product with F_av. ``pred_masks`` therefore holds
   the 1/4-resolution logits and full-resolution masks are made on demand (dice loss,
   matching, ``predict``), which saves 16x memory for N = 300 queries.
3. Per-frame queries (eq. 1 with a time-relative W_1). Eq. 1 (W_1 in R^{N x T}) mixes the T
   seconds of audio into N queries, and frame v_i is decoded with them (eq. 4-8, "taking one frame
   v_i as input"). The paper motivates the queries as "the disentanglement of audio signals at
   each timestamp", so each frame gets its own A_q^0(i) = W_1^(i) F_a, where column tau of W_1^(i)
   depends only on the offset tau - i: W_1^(i)[n, tau] = W[n, tau - i + M - 1] with one parameter
   W in R^{N x (2M - 1)} (M = ``max_frames``, 10 by default). Every W_1^(i) is an eq.-1 matrix, the
   frame's own second has its own column, and one model serves 5- and 10-second clips (a clip with
   T < M uses the offsets -(T-1)..T-1). Clip-level queries shared by all frames (the first reading)
   were measured to give identical predictions for one frame under five different seconds of audio
   (max difference 0), so they cannot follow which object sounds when (MS3). The audio embeddings
   (D = 128 VGGish or 1024 YAMNet) are first projected to the model width d by a linear layer (in
   the paper D = d = 128).
4. Layers follow eq. 2-3 and 6 literally: softmax(Q K^T / sqrt(d)) V plus the residual, with
   bias-free W_Q, W_K, W_V, no output projection, no LayerNorm, no FFN and no positional
   encoding (the pixel decoder's features already carry position). ``num_heads`` > 1 splits d
   into heads (scale sqrt(d / heads)); the paper configs use 1 head, as eq. 2 is written.
5. Round robin (eq. 4): layer l = 1..N_2 attends to f_v^i with i = (l mod 3) + 1, i.e. the
   order f_v^2, f_v^3, f_v^1, f_v^2, ... exactly as written (Mask2Former starts at the
   coarsest scale instead). F_av^1 = A_q (eq. 5); the fused feature F_av is the output of the
   N_2-th layer (the paper's "F_av^{N_2}" is off by one with l starting at 1).
6. N_1 and N_2 are not given in the paper: the paper configs use N_1 = 6 (a standard
   Transformer encoder [28]) and N_2 = 9 (three rounds over the three scales, as Mask2Former).
7. Classes (eq. 8, 15). K is "the number of category": background and the sounding classes,
   K = 2 for the binary datasets (0 = background, 1 = sounding), K = 71 for AVSS (the ground-truth
   ids, 0 = background). As in Mask2Former, on which the design is built, g has K + 1 outputs: the
   last one is "no object", the target of the queries the Hungarian matching leaves unmatched, and
   eq. 15 takes c_i over the K categories only. Background is a ground-truth segment like the others
   (with its own query and mask), so eq. 14 compares a pixel's sounding and background scores
   instead of thresholding p_i(c_i) m_i(x, y) at an absolute level. (The first reading, with
   background folded into "no object", was measured at 850 demo steps: the best query's mask reached
   IoU 0.70 but its p stayed near 0.54 under the focal loss, so p m > 0.5 kept only IoU 0.38.)
   g's bias starts at the focal-loss prior of [29] (Sec. 4.1, pi = 0.01 for the K categories
   together), so that the confident sets S_1, S_2 start (nearly) empty. h is bias-free (R^{d x d}).
8. Inference (eq. 14-15): c_i = argmax_{c < K} p_i(c); every pixel goes to the query with the
   largest p_i(c_i) m_i(x, y) and takes its class. ``predict`` returns, for each category c,
   S_c(x, y) = max over queries with c_i = c of p_i(c_i) m_i(x, y), normalised to sum to 1 over
   the categories (uniform where every S_c is 0), so argmax_c is exactly eq. 14's decision; the
   binary head returns S_1 / (S_0 + S_1), which exceeds 0.5 exactly where eq. 14 picks a sounding
   query.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.labels import NUM_AVSS_CLASSES
from train.losses.transavs_losses import TransAVSCriterion, TransAVSLossConfig
from train.models.backbones import build_backbone
from train.models.inference import upsample_mask_logits
from train.models.param_groups import split_parameter_groups
from train.models.pixel_decoder import MSDeformAttnPixelDecoder
from train.models.registry import CPU_DEMO_TRAIN, PAPER_TRAIN, TrainDefaults, register_model

TASKS = ("binary", "semantic")


class ResidualAttention(nn.Module):
    """One attention layer of eq. 3 (self-attention) or eq. 6 (cross-attention).

        X^{n+1} = softmax((X W_Q)(C W_K)^T / sqrt(d)) (C W_V) + X      (eq. 2, 3, 6)

    with C = X for self-attention. W_Q, W_K, W_V are bias-free (matrices in R^{d x d}).

    forward(x [B,N,d], context [B,S,d_c] or None) -> [B,N,d].
    """

    def __init__(self, dim: int, context_dim: int | None = None, num_heads: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ResidualAttention: dim {dim} must be divisible by num_heads {num_heads}")
        context_dim = dim if context_dim is None else context_dim
        self.num_heads = num_heads
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(context_dim, dim, bias=False)
        self.w_v = nn.Linear(context_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        heads = self.num_heads
        q = self.w_q(x).view(b, n, heads, d // heads).transpose(1, 2)
        k = self.w_k(context).view(b, context.shape[1], heads, d // heads).transpose(1, 2)
        v = self.w_v(context).view(b, context.shape[1], heads, d // heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d/heads)
        return attended.transpose(1, 2).reshape(b, n, d) + x


class AudioQueryGenerator(nn.Module):
    """Eq. 1-3: per-frame audio queries from the per-second audio embeddings of a clip (choice 3).

        F_a = audio Wa^T + ba                                      [B,T,d]   (projection D -> d)
        A_q^0(i) = W_1^(i) F_a,  W_1^(i)[n, tau] = W[n, tau - i + M - 1]   [B,T,N,d] (eq. 1, frame i)
        A_q^{n+1} = Atten(A_q^n W_Q^n, A_q^n W_K^n, A_q^n W_V^n) + A_q^n,  n < N_1   (eq. 2-3, per frame)

    ``query_weight`` is W in R^{N x (2M - 1)}, M = ``max_frames``: one column per time offset.

    forward(audio [B,T,D]) -> A_q = A_q^{N_1} [B,T,N,d].
    """

    def __init__(
        self, audio_dim: int, dim: int, num_queries: int, max_frames: int, num_layers: int, num_heads: int = 1
    ) -> None:
        super().__init__()
        self.audio_dim, self.max_frames = audio_dim, max_frames
        self.audio_proj = nn.Linear(audio_dim, dim)
        self.query_weight = nn.Parameter(torch.empty(num_queries, 2 * max_frames - 1))  # W of eq. 1
        bound = 1.0 / math.sqrt(max_frames)
        nn.init.uniform_(self.query_weight, -bound, bound)
        self.layers = nn.ModuleList(ResidualAttention(dim, num_heads=num_heads) for _ in range(num_layers))

    def frame_weights(self, num_frames: int) -> torch.Tensor:
        """W_1^(i) of every frame i < T: [T, N, T] (entry [i, n, tau] = W[n, tau - i + M - 1])."""
        steps = torch.arange(num_frames, device=self.query_weight.device)
        offsets = steps[None, :] - steps[:, None] + self.max_frames - 1  # [i, tau]
        return self.query_weight[:, offsets].permute(1, 0, 2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 3 or audio.shape[-1] != self.audio_dim:
            raise ValueError(
                f"TransAVS: batch['audio'] must be float [B,T,{self.audio_dim}] audio embeddings, "
                f"got shape {tuple(audio.shape)} (set audio_dim=128 for VGGish, 1024 for YAMNet)"
            )
        b, t = audio.shape[:2]
        if t > self.max_frames:
            raise ValueError(
                f"TransAVS: clip has T={t} audio frames but the model was built with max_frames={self.max_frames}"
            )
        features = self.audio_proj(audio)  # F_a [B,T,d]
        weights = self.frame_weights(t).to(features.dtype)  # [T,N,T]
        queries = torch.einsum("int,btd->bind", weights, features)  # eq. 1 for every frame i: [B,T,N,d]
        queries = queries.flatten(0, 1)
        for layer in self.layers:  # eq. 3, each frame's N queries attend to each other
            queries = layer(queries)
        return queries.view(b, t, *queries.shape[1:])


class AudioVisualDecoder(nn.Module):
    """Eq. 4-6: N_2 cross-attention layers from the audio queries to the image features.

        i = (l mod 3) + 1                                                          (eq. 4)
        F_av^1 = A_q                                                               (eq. 5)
        F_av^{l+1} = Atten(F_av^l W_Q^l, f_v^i W_K^l, f_v^i W_V^l) + F_av^l        (eq. 6)

    forward(queries [F,N,d], features: list of 3 maps f_v^1..f_v^3 [F,C_v,h_i,w_i]) -> F_av [F,N,d].
    """

    def __init__(self, dim: int, feature_dim: int, num_layers: int, num_heads: int = 1, num_scales: int = 3) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.layers = nn.ModuleList(ResidualAttention(dim, feature_dim, num_heads) for _ in range(num_layers))

    def scale_of_layer(self, layer: int) -> int:
        """0-based index into [f_v^1, f_v^2, f_v^3] for 1-based layer l (eq. 4: i = (l mod 3) + 1)."""
        return layer % self.num_scales

    def forward(self, queries: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != self.num_scales:
            raise ValueError(f"AudioVisualDecoder: expected {self.num_scales} feature maps, got {len(features)}")
        tokens = [f.flatten(2).transpose(1, 2) for f in features]  # [F, h_i*w_i, C_v]
        fused = queries  # eq. 5
        for l, layer in enumerate(self.layers, start=1):
            fused = layer(fused, tokens[self.scale_of_layer(l)])  # eq. 6
        return fused


class TransAVS(nn.Module):
    """TransAVS with the common model interface of train/models/registry.py.

    Args:
        backbone: image backbone (``out_channels`` for res2..res5, forward -> dict of 4 maps).
        pixel_decoder: multi-scale decoder -> (W_2 f_v^4 [F,d,H/4,W/4], [f_v^1, f_v^2, f_v^3]).
        audio_queries: ``AudioQueryGenerator`` (eq. 1-3).
        decoder: ``AudioVisualDecoder`` (eq. 4-6).
        num_classes: K categories (2 for binary, 71 for AVSS; class 0 = background); g adds "no object".
        task: "binary" or "semantic".
        criterion: ``TransAVSCriterion`` (eq. 9-13, 18).
        class_prior: initial probability of the K categories together (choice 7).

    forward(batch) -> outputs dict:
        "pred_logits":       [B,T,N,K+1] class logits g(F_av) (eq. 8 before softmax; last = no object)
        "pred_masks":        [B,T,N,H/4,W/4] mask logits F_av W_2 f_v^4 (eq. 7 before sigmoid and
                              before the exact bilinear upsampling to H x W, choice 2)
        "audio_queries":     [B,T,N,d] A_q of each frame (the q_i of Z)
        "projected_queries": [B,T,N,d] h(A_q) (eq. 10)
    """

    def __init__(
        self,
        backbone: nn.Module,
        pixel_decoder: nn.Module,
        audio_queries: AudioQueryGenerator,
        decoder: AudioVisualDecoder,
        criterion: TransAVSCriterion,
        num_classes: int,
        task: str = "binary",
        class_prior: float = 0.01,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"TransAVS: task must be one of {TASKS}, got {task!r}")
        if task == "binary" and num_classes != 2:
            raise ValueError(
                f"TransAVS: the binary task has K = 2 classes (paper eq. 8), got num_classes={num_classes}"
            )
        if num_classes < 2:
            raise ValueError(f"TransAVS: num_classes must be >= 2, got {num_classes}")
        self.task, self.num_classes = task, num_classes
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.audio_queries = audio_queries
        self.decoder = decoder
        dim = audio_queries.audio_proj.out_features
        self.classifier = nn.Linear(dim, num_classes + 1)  # g (eq. 8), last output = no object
        self.projection_head = nn.Linear(dim, dim, bias=False)  # h (eq. 10)
        nn.init.zeros_(self.classifier.bias)
        with torch.no_grad():  # [29] Sec. 4.1 prior: P(any category) = class_prior at initialisation
            self.classifier.bias[:num_classes] = math.log(class_prior / ((1 - class_prior) * num_classes))
        self.criterion = criterion

    inputs: tuple[str, ...] = ("frames", "audio")  # batch keys the model reads

    @property
    def max_frames(self) -> int:
        """The longest clip (in seconds) the audio-query generator takes (W_1 has this many columns)."""
        return self.audio_queries.max_frames

    # ------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for key in ("frames", "audio"):
            if key not in batch:
                raise KeyError(
                    f"TransAVS: batch has no {key!r} (keys: {sorted(batch)}); expected "
                    f"frames float [B,T,3,H,W] and audio float [B,T,D] embeddings"
                )
        frames, audio = batch["frames"], batch["audio"]
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"TransAVS: batch['frames'] must be [B,T,3,H,W], got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        if audio.shape[:2] != (b, t):
            raise ValueError(f"TransAVS: batch['audio'] {tuple(audio.shape)} does not match frames [B,T] = {(b, t)}")

        features = self.backbone(frames.flatten(0, 1))
        mask_features, multi_scale = self.pixel_decoder(features)  # W_2 f_v^4; [f_v^1, f_v^2, f_v^3]
        audio_queries = self.audio_queries(audio)  # A_q [B,T,N,d], choice 3
        fused = self.decoder(audio_queries.flatten(0, 1), multi_scale)  # F_av [B*T,N,d]
        class_logits = self.classifier(fused)  # eq. 8
        mask_logits = torch.einsum("fnd,fdhw->fnhw", fused, mask_features)  # eq. 7
        n = fused.shape[1]
        return {
            "pred_logits": class_logits.view(b, t, n, -1),
            "pred_masks": mask_logits.view(b, t, n, *mask_logits.shape[-2:]),
            "audio_queries": audio_queries,
            "projected_queries": self.projection_head(audio_queries),
        }

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], step: int = 0
    ) -> dict[str, torch.Tensor]:
        """Eq. 13 with the eq.-18 thresholds at training iteration ``step``; see ``TransAVSCriterion``."""
        return self.criterion(outputs, batch, step=step)

    @torch.no_grad()
    def predict(self, outputs: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Eq. 14-15 (choice 8) at output size (H, W).

        Returns:
            binary: float [B,T,H,W] S_1 / (S_0 + S_1), > 0.5 where eq. 14 picks a sounding query;
            semantic: float [B,T,K,H,W] S_c normalised over the K categories (argmax = eq. 14).
        """
        logits, mask_logits = outputs["pred_logits"], outputs["pred_masks"]
        b, t, n, _ = logits.shape
        k = self.num_classes
        score, label = logits.float().softmax(-1)[..., :k].max(-1)  # p_i(c_i), c_i over the K categories (eq. 15)
        out = mask_logits.new_zeros(b * t, k, *size, dtype=torch.float32)
        for frame in range(b * t):  # one frame at a time bounds memory to N x H x W
            masks = upsample_mask_logits(mask_logits.flatten(0, 1)[frame].float(), size).sigmoid()  # m_i, eq. 7
            weighted = score.flatten(0, 1)[frame][:, None, None] * masks  # p_i(c_i) m_i(x,y), eq. 14
            index = label.flatten(0, 1)[frame][:, None, None].expand_as(weighted)
            out[frame].scatter_reduce_(0, index, weighted, reduce="amax", include_self=True)
        total = out.sum(1, keepdim=True)
        out = torch.where(total > 0, out / total.clamp_min(torch.finfo(out.dtype).tiny), 1.0 / k)
        out = out.view(b, t, k, *size)
        return out[:, :, 1] if self.task == "binary" else out

    def backbone_parameter_names(self) -> set[str]:
        return {f"backbone.{name}" for name, _ in self.backbone.named_parameters()}

    def parameter_groups(
        self, lr: float = 1e-4, weight_decay: float = 0.05, backbone_lr_mult: float = 0.1
    ) -> list[dict]:
        """AdamW parameter groups: backbone at ``lr * backbone_lr_mult``; no weight decay on norms,
        biases, embeddings and queries (W_1); frozen parameters left out."""
        return split_parameter_groups(
            self,
            self.backbone_parameter_names(),
            lr,
            weight_decay,
            backbone_lr_mult,
            no_decay_name_parts=_NO_DECAY_NAME_PARTS,
        )


_NO_DECAY_NAME_PARTS: tuple[str, ...] = ("norm", "embed", "query_weight")


# ----------------------------------------------------------------------------------------------
# Builder and registered configs
# ----------------------------------------------------------------------------------------------


def build_transavs(
    task: str = "binary",
    num_classes: int | None = None,
    backbone: str = "resnet50",
    pretrained: str | None = None,
    backbone_kwargs: dict | None = None,
    hidden_dim: int = 256,
    pixel_decoder_layers: int = 6,
    pixel_decoder_heads: int = 8,
    pixel_decoder_points: int = 4,
    pixel_decoder_ffn: int = 1024,
    num_queries: int = 300,
    encoder_layers: int = 6,
    decoder_layers: int = 9,
    num_heads: int = 1,
    audio_dim: int = 128,
    max_frames: int = 10,
    class_prior: float = 0.01,
    loss: dict | None = None,
) -> TransAVS:
    """Build TransAVS from plain config values.

    ``hidden_dim`` is both C_v (pixel decoder width) and d (query width; W_2 maps to it).
    ``num_classes`` defaults to 2 (binary) or 71 (semantic). ``loss`` overrides fields of
    ``TransAVSLossConfig`` (e.g. ``{"d0": 0.5}``).
    """
    if task not in TASKS:
        raise ValueError(f"build_transavs: task must be one of {TASKS}, got {task!r}")
    if num_classes is None:
        num_classes = 2 if task == "binary" else NUM_AVSS_CLASSES
    image_backbone = build_backbone(backbone, pretrained=pretrained, **(backbone_kwargs or {}))
    pixel_decoder = MSDeformAttnPixelDecoder(
        image_backbone.out_channels,
        hidden_dim=hidden_dim,
        num_layers=pixel_decoder_layers,
        mask_dim=hidden_dim,
        num_heads=pixel_decoder_heads,
        num_points=pixel_decoder_points,
        ffn_dim=pixel_decoder_ffn,
    )
    audio_queries = AudioQueryGenerator(audio_dim, hidden_dim, num_queries, max_frames, encoder_layers, num_heads)
    decoder = AudioVisualDecoder(hidden_dim, hidden_dim, decoder_layers, num_heads)
    criterion = TransAVSCriterion(num_classes, TransAVSLossConfig(**(loss or {})))
    return TransAVS(
        image_backbone,
        pixel_decoder,
        audio_queries,
        decoder,
        criterion,
        num_classes=num_classes,
        task=task,
        class_prior=class_prior,
    )


# The paper's recipe (Sec. 4) is PAPER_TRAIN (weight decay and clipping not given there: Mask2Former's).
# The CPU demo: COMBO's demo settings at lr 3e-3 (docs/models.md: S4 M_J 0.764 at 3e-3, 0.671 at 1e-3).
DEMO_TRAIN = replace(CPU_DEMO_TRAIN, lr=3e-3)

register_model(
    "transavs_r50",
    build_transavs,
    config=dict(backbone="resnet50"),
    train=PAPER_TRAIN,
    description="Paper settings with ResNet-50 (pass pretrained=<torchvision file or R-50.pkl>), d = 256, N = 300",
)
register_model(
    "transavs_r101",
    build_transavs,
    config=dict(backbone="resnet101"),
    train=PAPER_TRAIN,
    description="Paper config (Table 1): ResNet-101, ImageNet-1K (pretrained=<torchvision resnet101 file>), "
    "d = 256, N = 300",
)
register_model(
    "transavs_swin_b",
    build_transavs,
    config=dict(backbone="swin_b"),
    train=PAPER_TRAIN,
    description="Paper config (Table 1): Swin-B, ImageNet-22K (pretrained=<timm or official Swin-B 22K file>), "
    "d = 256, N = 300",
)
register_model(
    "transavs_pvt_b5",
    build_transavs,
    config=dict(backbone="pvt_v2_b5"),
    train=PAPER_TRAIN,
    description="Paper settings with a PVT-v2-b5 backbone (pass pretrained=<official release file>)",
)
register_model(
    "transavs_mnv2",
    build_transavs,
    config=dict(
        backbone="mobilenet_v2",
        pretrained="imagenet",
        hidden_dim=64,
        pixel_decoder_layers=2,
        pixel_decoder_heads=4,
        pixel_decoder_points=4,
        pixel_decoder_ffn=128,
        num_queries=32,
        encoder_layers=2,
        decoder_layers=3,
    ),
    train=DEMO_TRAIN,
    description="CPU demo: ImageNet MobileNetV2 (offline weights), d = 64, N = 32 queries, N_1 = 2, N_2 = 3",
)
register_model(
    "transavs_tiny",
    build_transavs,
    config=dict(
        backbone="resnet18_small",
        hidden_dim=16,
        pixel_decoder_layers=1,
        pixel_decoder_heads=2,
        pixel_decoder_points=2,
        pixel_decoder_ffn=32,
        num_queries=8,
        encoder_layers=1,
        decoder_layers=3,
        max_frames=5,
    ),
    train=TrainDefaults(max_steps=1000, batch_size=4),  # tests set what they need
    description="Test config: small ResNet-18, d = 16, N = 8 queries, N_1 = 1, N_2 = 3; random weights",
)


__all__ = [
    "AudioQueryGenerator",
    "AudioVisualDecoder",
    "ResidualAttention",
    "TransAVS",
    "build_transavs",
]
