"""Pixel decoder output shapes; its attention is the shared ``pipeline.nn.MSDeformAttn`` (tested in
tests/pipeline/test_nn_ms_deform_attn.py)."""

from __future__ import annotations

import torch

from pipeline.nn import MSDeformAttn
from train.models.pixel_decoder import MSDeformAttnPixelDecoder


def test_pixel_decoder_shapes() -> None:
    channels = {"res2": 8, "res3": 16, "res4": 24, "res5": 32}
    decoder = MSDeformAttnPixelDecoder(channels, hidden_dim=32, num_layers=2, num_heads=4, ffn_dim=64)
    features = {
        name: torch.randn(2, c, 64 // 2 ** (i + 2), 96 // 2 ** (i + 2)) for i, (name, c) in enumerate(channels.items())
    }
    mask_features, multi_scale = decoder(features)
    assert mask_features.shape == (2, 32, 16, 24)
    assert [tuple(t.shape) for t in multi_scale] == [(2, 32, 2, 3), (2, 32, 4, 6), (2, 32, 8, 12)]
    assert len(decoder.layers) == 2
    assert len(MSDeformAttnPixelDecoder(channels, hidden_dim=32).layers) == 6  # paper default


def test_pixel_decoder_uses_the_shared_deformable_attention() -> None:
    channels = {"res2": 8, "res3": 16, "res4": 24, "res5": 32}
    decoder = MSDeformAttnPixelDecoder(channels, hidden_dim=32, num_layers=2, num_heads=4, num_points=3)
    attentions = [m for m in decoder.modules() if isinstance(m, MSDeformAttn)]
    assert len(attentions) == 2 and all(a is layer.self_attn for a, layer in zip(attentions, decoder.layers))
    assert {(a.n_levels, a.n_heads, a.n_points) for a in attentions} == {(3, 4, 3)}
    assert "layers.0.self_attn.sampling_offsets.weight" in decoder.state_dict()
