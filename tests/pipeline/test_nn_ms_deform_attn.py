"""The one MSDeformAttn (pipeline/nn/ms_deform_attn.py): its sampling core against a naive per-point
bilinear reference kept here, the module's sampling locations against the official formulas written
out by hand, its initialisation, official names and errors."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.nn import MSDeformAttn, ms_deform_attn_core

OFFICIAL_KEYS = [
    "sampling_offsets.weight",
    "sampling_offsets.bias",
    "attention_weights.weight",
    "attention_weights.bias",
    "value_proj.weight",
    "value_proj.bias",
    "output_proj.weight",
    "output_proj.bias",
]


def naive_bilinear(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """image [D,H,W]; (x, y) normalised to [0,1] with pixel centres at (i + 0.5) / W; zeros outside."""
    _, h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(image.shape[0], dtype=image.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < w and 0 <= yi < h:
                out += (1 - abs(px - xi)) * (1 - abs(py - yi)) * image[:, yi, xi]
    return out


def naive_ms_deform_attn(value, shapes, locations, weights) -> torch.Tensor:
    """Deformable DETR eq. 3 one sample at a time: value [N,S,M,D], locations [N,Q,M,L,P,2],
    weights [N,Q,M,L,P] -> [N,Q,M*D]."""
    n, _, heads, head_dim = value.shape
    _, num_queries, _, _, points, _ = locations.shape
    starts = [sum(h * w for h, w in shapes[:level]) for level in range(len(shapes))]
    out = torch.zeros(n, num_queries, heads, head_dim, dtype=value.dtype)
    for b in range(n):
        for m in range(heads):
            for level, (h, w) in enumerate(shapes):
                image = value[b, starts[level] : starts[level] + h * w, m].T.reshape(head_dim, h, w)
                for q in range(num_queries):
                    for p in range(points):
                        x, y = locations[b, q, m, level, p].tolist()
                        out[b, q, m] += weights[b, q, m, level, p] * naive_bilinear(image, x, y)
    return out.flatten(2)


def random_inputs(dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 7), (3, 4), (2, 2)]  # non-square levels of another size each
    value = torch.randn(2, sum(h * w for h, w in shapes), 3, 5, generator=g, dtype=dtype)
    locations = torch.rand(2, 4, 3, 3, 2, 2, generator=g, dtype=dtype) * 1.4 - 0.2  # some samples fall outside
    weights = torch.rand(2, 4, 3, 3, 2, generator=g, dtype=dtype)
    return value, shapes, locations, weights


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_sampling_core_equals_naive_bilinear_reference(dtype, tol):
    value, shapes, locations, weights = random_inputs(dtype)
    out = ms_deform_attn_core(value, shapes, locations, weights)
    assert out.shape == (2, 4, 15) and out.dtype == dtype
    torch.testing.assert_close(out, naive_ms_deform_attn(value, shapes, locations, weights), atol=tol, rtol=tol)


def test_sampling_core_gradients_match_finite_differences():
    value, shapes, locations, weights = random_inputs(torch.float64, seed=1)
    # one image, two queries (random locations lie off the pixel-centre lines, where bilinear sampling has kinks)
    value = value[:1].clone().requires_grad_()
    locations = locations[:1, :2].clone().requires_grad_()
    weights = weights[:1, :2].clone().requires_grad_()
    core = lambda v, loc, wgt: ms_deform_attn_core(v, shapes, loc, wgt)  # noqa: E731
    assert torch.autograd.gradcheck(core, (value, locations, weights))


def module_and_inputs(reference_dims: int, seed: int = 0):
    torch.manual_seed(seed)
    attn = MSDeformAttn(d_model=12, n_levels=2, n_heads=3, n_points=2)
    for p in attn.parameters():  # the official initialisation zeroes the query's influence: randomise everything
        torch.nn.init.normal_(p, std=0.5)
    shapes = [(4, 5), (2, 3)]
    query = torch.randn(2, 6, 12)
    reference = torch.rand(2, 6, 2, reference_dims)
    source = torch.randn(2, 26, 12)
    return attn, shapes, query, reference, source


def expected_output(attn, shapes, query, reference, source, padding=None) -> torch.Tensor:
    """The official module's formulas, written out with the naive core."""
    n, q, _ = query.shape
    offsets = attn.sampling_offsets(query).view(n, q, 3, 2, 2, 2)
    weights = attn.attention_weights(query).view(n, q, 3, 4).softmax(-1).view(n, q, 3, 2, 2)
    ref = reference[:, :, None, :, None, :]
    if reference.shape[-1] == 2:
        locations = ref + offsets / torch.tensor([[w, h] for h, w in shapes])[None, None, None, :, None]
    else:
        locations = ref[..., :2] + offsets / 2 * ref[..., 2:] * 0.5
    value = attn.value_proj(source)
    if padding is not None:
        value = value * (~padding[..., None])
    sampled = naive_ms_deform_attn(value.view(n, -1, 3, 4), shapes, locations, weights)
    return attn.output_proj(sampled)


@pytest.mark.parametrize("reference_dims", [2, 4])
def test_module_follows_the_official_formulas(reference_dims):
    attn, shapes, query, reference, source = module_and_inputs(reference_dims)
    with torch.no_grad():
        out = attn(query, reference, source, shapes)
        torch.testing.assert_close(out, expected_output(attn, shapes, query, reference, source), atol=1e-5, rtol=1e-5)


def test_padded_inputs_contribute_nothing():
    attn, shapes, query, reference, source = module_and_inputs(4, seed=1)
    padding = torch.zeros(2, 26, dtype=torch.bool)
    padding[0, -6:] = True  # the last level of the first image
    changed = source.clone()
    changed[0, -6:] = 100.0
    with torch.no_grad():
        out = attn(query, reference, source, shapes, padding)
        torch.testing.assert_close(out, attn(query, reference, changed, shapes, padding))
        torch.testing.assert_close(
            out, expected_output(attn, shapes, query, reference, source, padding), atol=1e-5, rtol=1e-5
        )
        assert not torch.allclose(out, attn(query, reference, source, shapes))


def test_initialisation_rings_and_uniform_weights():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    query = torch.randn(1, 5, 16)
    reference = torch.full((1, 5, 2, 2), 0.5)
    shapes = [(4, 4), (2, 2)]
    with torch.no_grad():
        locations, weights = attn.sampling(query, reference, shapes)
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / 6))  # softmax of zeros over levels x points
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # one per head
    for level, (h, w) in enumerate(shapes):
        for point in range(3):
            pixels = (locations[0, :, :, level, point] - 0.5) * torch.tensor([w, h])
            expected = (directions * (point + 1)).expand(5, -1, -1)
            torch.testing.assert_close(pixels, expected, atol=1e-6, rtol=0)


def test_official_parameter_and_argument_names():
    attn = MSDeformAttn(d_model=32, n_levels=3, n_heads=4, n_points=2)
    assert list(attn.state_dict()) == OFFICIAL_KEYS
    assert (attn.d_model, attn.n_levels, attn.n_heads, attn.n_points) == (32, 3, 4, 2)
    assert attn.sampling_offsets.out_features == 4 * 3 * 2 * 2 and attn.attention_weights.out_features == 4 * 3 * 2


def test_bad_shapes_are_one_line_errors():
    attn, shapes, query, reference, source = module_and_inputs(2)
    with pytest.raises(ValueError, match="built for 2 levels, got 1"):
        attn(query, reference, source[:, :20], shapes[:1])
    with pytest.raises(ValueError, match=r"do not cover the 25 inputs"):
        attn(query, reference, source[:, :25], shapes)
    with pytest.raises(ValueError, match="end in 2 or 4 values, got 3"):
        attn(query, torch.rand(2, 6, 2, 3), source, shapes)
    with pytest.raises(ValueError, match="d_model 10 is not divisible by n_heads 4"):
        MSDeformAttn(d_model=10, n_heads=4)


def test_bfloat16_autocast_stays_close_to_float32():
    attn, shapes, query, reference, source = module_and_inputs(2)
    with torch.no_grad():
        exact = attn(query, reference, source, shapes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = attn(query, reference, source, shapes)
    assert low.dtype == torch.bfloat16
    assert (low.float() - exact).abs().max() <= 0.05 * exact.abs().max()
