"""Weight composition of the fast path's kernel embedding, against torch's float64 transposed convolution."""

from __future__ import annotations

from fmanet_plugin.archs.fmanet_fast_layers import compose_conv_weights

import pytest
import torch
import torch.nn.functional as F


@pytest.mark.parametrize(
    'outer_shape, inner_shape',
    [
        ((90, 400, 3, 3, 3), (400, 90, 3, 3)),  # released: dim 90, ds_kernel_size 20 (k_d^2 = 400)
        ((5, 7, 2, 3, 3), (7, 4, 5, 5)),  # distinct channels and kernel sizes, two temporal taps
    ],
)
def test_composition_equals_float64_conv_transpose(outer_shape, inner_shape):
    gen = torch.Generator().manual_seed(0)
    w_outer = torch.randn(outer_shape, generator=gen) * 0.05
    w_inner = torch.randn(inner_shape, generator=gen) * 0.05
    expected = torch.stack(
        [F.conv_transpose2d(w_outer[:, :, t].double(), w_inner.double()) for t in range(outer_shape[2])], dim=2
    )
    composed = compose_conv_weights(w_outer, w_inner)
    assert composed.dtype == torch.float64 and composed.shape == expected.shape
    assert (composed - expected).abs().max().item() <= 1e-12 * expected.abs().max().item()
