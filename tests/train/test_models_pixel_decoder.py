"""MSDeformAttn against a naive per-point bilinear reference; pixel decoder output shapes."""

from __future__ import annotations

import math

import torch

from train.models.pixel_decoder import MSDeformAttn, MSDeformAttnPixelDecoder, ms_deform_attn_core


def naive_bilinear(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """image [D,H,W]; (x, y) normalised in [0,1] (pixel centres at (i+0.5)/W); zero padding."""
    _, h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(image.shape[0], dtype=image.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - abs(px - xi)) * (1 - abs(py - yi))
            if 0 <= xi < w and 0 <= yi < h:
                out += weight * image[:, yi, xi]
    return out


def test_ms_deform_attn_core_matches_naive_reference() -> None:
    torch.manual_seed(0)
    n, heads, head_dim, points = 2, 2, 3, 2
    shapes = [(4, 5), (2, 3)]
    num_queries = 3
    value = torch.randn(n, sum(h * w for h, w in shapes), heads, head_dim, dtype=torch.float64)
    locations = torch.rand(n, num_queries, heads, len(shapes), points, 2, dtype=torch.float64) * 1.2 - 0.1
    weights = torch.rand(n, num_queries, heads, len(shapes), points, dtype=torch.float64)
    out = ms_deform_attn_core(value, shapes, locations, weights)
    expected = torch.zeros(n, num_queries, heads, head_dim, dtype=torch.float64)
    starts = [0, shapes[0][0] * shapes[0][1]]
    for b in range(n):
        for q in range(num_queries):
            for m in range(heads):
                for level, (h, w) in enumerate(shapes):
                    image = value[b, starts[level] : starts[level] + h * w, m].T.reshape(head_dim, h, w)
                    for p in range(points):
                        x, y = locations[b, q, m, level, p].tolist()
                        expected[b, q, m] += weights[b, q, m, level, p] * naive_bilinear(image, x, y)
    assert torch.allclose(out, expected.flatten(2), atol=1e-10)


def test_ms_deform_attn_module_shapes_and_init() -> None:
    attention = MSDeformAttn(d_model=16, num_levels=2, num_heads=4, num_points=3)
    query = torch.randn(2, 5, 16)
    reference = torch.rand(2, 5, 2, 2)
    value = torch.randn(2, 4 * 4 + 2 * 2, 16)
    assert attention(query, reference, value, [(4, 4), (2, 2)]).shape == (2, 5, 16)
    _, weights = attention.sampling(query, reference, [(4, 4), (2, 2)])
    assert torch.allclose(weights.sum((-1, -2)), torch.ones(2, 5, 4))  # softmax over levels x points


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
