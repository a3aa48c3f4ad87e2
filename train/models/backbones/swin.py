"""Swin Transformer backbones: timm's ``SwinTransformer`` (built with random weights, never
downloaded) cut into four stages, with a LayerNorm on each output as Mask2Former's Swin backbone
has (those four norms are new layers: no ImageNet file holds them).

Pretrained files: timm state dicts (``swin_base_patch4_window7_224.ms_in22k``) or the official
Microsoft release (``swin_base_patch4_window7_224_22k.pth``), converted by timm's own checkpoint
filter; the classification head and the final norm are ignored.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from train.models.backbones.registry import STAGE_NAMES, register_backbone


class SwinBackbone(nn.Module):
    """Swin Transformer trunk with per-stage output norms.

    Args:
        embed_dim: channels of stage 1 (doubled at each later stage).
        depths, num_heads: blocks and attention heads per stage.
        window_size: attention window (7 for the 224-pixel ImageNet models).
        drop_path_rate: stochastic depth at the last block (0.3 for Swin-B in Mask2Former).
        img_size: the size the relative position tables are made for; other sizes are padded.

    forward(x [N,3,H,W]) -> res2..res5 [N, embed_dim * 2**i, H / 2**(i+2), W / 2**(i+2)].
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: tuple[int, int, int, int] = (2, 2, 18, 2),
        num_heads: tuple[int, int, int, int] = (4, 8, 16, 32),
        window_size: int = 7,
        drop_path_rate: float = 0.3,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        from timm.models.swin_transformer import SwinTransformer  # timm only where Swin is used

        self.body = SwinTransformer(
            img_size=img_size,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            drop_path_rate=drop_path_rate,
            num_classes=0,
            strict_img_size=False,  # any input size divisible by 32 (windows padded)
        )
        self.body.norm = nn.Identity()  # the classifier's final norm: the output norms replace it
        widths = [embed_dim * 2**i for i in range(4)]
        self.out_norms = nn.ModuleList(nn.LayerNorm(width) for width in widths)
        self.out_channels = dict(zip(STAGE_NAMES, widths))

    @property
    def pretrained_module(self) -> nn.Module:
        """The part an ImageNet file loads into (the output norms are not in such files)."""
        return self.body

    def adapt_pretrained(self, state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
        """timm names for a timm or official Swin file (timm's filter renames and drops buffers)."""
        from timm.models.swin_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(dict(state), self.body)
        return {k: v for k, v in state.items() if not k.startswith(("norm.", "head."))}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stages = self.body.forward_intermediates(x, intermediates_only=True)  # 4 x [N,C,h,w]
        out = {}
        for name, norm, feature in zip(STAGE_NAMES, self.out_norms, stages):
            out[name] = norm(feature.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return out


@register_backbone("swin_b")
def swin_b(drop_path_rate: float = 0.3, img_size: int = 224) -> SwinBackbone:
    """Swin-B (window 7, channels 128/256/512/1024): TransAVS's ImageNet-22K backbone."""
    return SwinBackbone(128, (2, 2, 18, 2), (4, 8, 16, 32), 7, drop_path_rate, img_size)


@register_backbone("swin_tiny_test")
def swin_tiny_test(img_size: int = 64) -> SwinBackbone:
    """Swin layout with few channels (16..128) and one block per stage, for fast tests; no pretrained weights."""
    return SwinBackbone(16, (1, 1, 1, 1), (1, 2, 4, 8), 4, 0.0, img_size)
