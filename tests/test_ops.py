"""Warping, flow-guided dynamic filtering and the chunked-execution primitives against hand-computed cases,
invariants and the whole-tensor torch operations they split up."""

from __future__ import annotations

import fmanet_plugin  # noqa: F401
from fmanet_plugin.ops import fgdf_downsample, fgdf_upsample, normalize_restoration_kernels, warp_image, warp_multi_flow
from fmanet_plugin.ops.chunked import ExecutionMode, FrameGroups, conv3d_frames, conv3x3_rows
from fmanet_plugin.ops.pointwise import fold_frames, fold_frames_into, pointwise_sum

import pytest
import torch
import torch.nn.functional as F

BIG = 30.0  # mask logit with sigmoid(BIG) == 1 in float32


def _flow_mask(n: int, h: int, w: int, dx: float, dy: float, logit: float = BIG) -> torch.Tensor:
    fm = torch.zeros(n, 3, h, w)
    fm[:, 0], fm[:, 1], fm[:, 2] = dx, dy, logit
    return fm


def test_zero_flow_is_identity():
    img = torch.rand(2, 3, 8, 10)
    warped, ones = warp_image(img, _flow_mask(2, 8, 10, 0, 0))
    assert torch.allclose(warped, img, atol=1e-6)
    assert torch.allclose(ones, torch.ones_like(ones))


def test_integer_flow_shifts_by_whole_pixels_with_zero_padding():
    img = torch.rand(1, 1, 6, 7)
    warped, ones = warp_image(img, _flow_mask(1, 6, 7, 2, -1))
    # backward warp: out(y, x) = img(y - 1, x + 2), zero outside the frame
    expected = torch.zeros_like(img)
    expected[..., 1:, :-2] = img[..., :-1, 2:]
    assert torch.allclose(warped, expected, atol=1e-6)
    inside = torch.zeros_like(img)
    inside[..., 1:, :-2] = 1.0
    assert torch.allclose(ones, inside, atol=1e-6)


def test_half_pixel_flow_is_bilinear_average():
    img = torch.arange(12.0).view(1, 1, 3, 4)
    warped, _ = warp_image(img, _flow_mask(1, 3, 4, 0.5, 0))
    assert torch.allclose(warped[..., :3], (img[..., :3] + img[..., 1:]) / 2)


def test_mask_multiplies_by_sigmoid():
    img = torch.rand(1, 3, 5, 5)
    warped, ones = warp_image(img, _flow_mask(1, 5, 5, 0, 0, logit=0.0))
    assert torch.allclose(warped, img * 0.5, atol=1e-6)
    assert torch.allclose(ones, torch.full_like(ones, 0.5))


def test_scaled_warp_upsamples_flow_and_multiplies_by_scale():
    hr = torch.rand(1, 3, 16, 16)
    # a constant LR flow of 1 px is 4 HR px: out(y, x) = hr(y, x + 4)
    warped, _ = warp_image(hr, _flow_mask(1, 4, 4, 1, 0), scale=4)
    assert torch.allclose(warped[..., :-4], hr[..., 4:], atol=1e-5)
    assert warped[..., -4:].abs().max() < 1e-6


def test_multi_flow_warps_each_channel_group_with_its_own_flow():
    b, t, c, h, w, n = 1, 3, 6, 5, 6, 3
    feat = torch.rand(b, t, c, h, w)
    fm = torch.zeros(b, t, 3 * n, h, w)
    fm[:, :, 2::3] = BIG
    fm[:, :, 0] = 1.0  # group 0 (channels 0-1): shift by +1 in x
    fm[:, :, 4] = 1.0  # group 1 (channels 2-3): shift by +1 in y; group 2 unchanged
    out = warp_multi_flow(feat, fm, n)
    assert torch.allclose(out[:, :, 0:2, :, :-1], feat[:, :, 0:2, :, 1:], atol=1e-6)
    assert torch.allclose(out[:, :, 2:4, :-1], feat[:, :, 2:4, 1:], atol=1e-6)
    assert torch.allclose(out[:, :, 4:6], feat[:, :, 4:6], atol=1e-6)


def test_fgdf_downsample_one_hot_kernel_selects_one_tap():
    b, t, s, kd, h, w = 1, 3, 4, 8, 3, 5
    hr = torch.rand(b, t, 2, s * h, s * w)
    logits = torch.full((b, t, kd * kd, h, w), -1e4)
    ky, kx, frame = 3, 5, 1
    logits[:, frame, ky * kd + kx] = 0.0
    out = fgdf_downsample(hr, logits, s)
    pad = (kd - s) // 2
    padded = F.pad(hr[:, frame], (pad, pad, pad, pad), mode='replicate')
    expected = padded[..., ky : ky + s * h : s, kx : kx + s * w : s]
    assert torch.allclose(out, expected, atol=1e-6)


def test_fgdf_downsample_uniform_kernel_of_constant_is_constant_and_normaliser_cancels_mask():
    hr = torch.full((2, 3, 3, 16, 20), 0.7)
    logits = torch.zeros(2, 3, 64, 4, 5)
    ones = torch.full((2, 3, 1, 16, 20), 0.25)  # e.g. a uniform occlusion mask
    out = fgdf_downsample(hr * 0.25, logits, 4, hr_ones=ones)
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-5)


def test_fgdf_downsample_box_kernel_is_area_average():
    s = kd = 4
    hr = torch.rand(1, 1, 1, 8, 12)
    out = fgdf_downsample(hr, torch.zeros(1, 1, kd * kd, 2, 3), s)
    assert torch.allclose(out, F.avg_pool2d(hr[:, 0], s), atol=1e-6)


def test_restoration_taps_sum_to_one_per_subpixel():
    kernels = torch.randn(2, 3, 16 * 9, 4, 5)
    normalised = normalize_restoration_kernels(kernels, 4)
    assert normalised.shape == (2, 3, 16, 9, 4, 5)
    assert torch.allclose(normalised.sum(dim=(1, 3)), torch.ones(2, 16, 4, 5), atol=1e-5)


def test_fgdf_upsample_constant_input_gives_constant_output():
    lr = torch.full((1, 3, 3, 4, 5), 0.3)
    out = fgdf_upsample(lr, torch.randn(1, 3, 16 * 9, 4, 5), 4)
    assert out.shape == (1, 3, 16, 20)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-5)


def test_fgdf_upsample_subpixel_order():
    """Channel order (s1, s2, ky, kx): a kernel putting all weight on one tap at sub-pixel (s1, s2) only."""
    s, kr, t, h, w = 4, 3, 1, 3, 4
    lr = torch.rand(1, t, 1, h, w)
    kernels = torch.zeros(1, t, s * s * kr * kr, h, w)
    # Normalisation maps k -> k - mean + 1/9; to select tap (ky=0, kx=2) put 1 there and 0 elsewhere:
    # normalised tap = 1 - 1/9 + 1/9 = 1 and the others 0 - 1/9 + 1/9 = 0.
    s1, s2 = 2, 1
    kernels[:, :, ((s1 * s + s2) * kr + 0) * kr + 2] = 1.0
    for other in range(s * s):
        if other != s1 * s + s2:
            kernels[:, :, other * kr * kr + 4] = 1.0  # centre tap: identity
    out = fgdf_upsample(lr, kernels, s)
    padded = F.pad(lr[:, 0], (1, 1, 1, 1), mode='replicate')
    assert torch.allclose(out[..., s1::s, s2::s], padded[..., 0:h, 2 : 2 + w], atol=1e-6)
    assert torch.allclose(out[..., 0::s, 0::s], lr[:, 0], atol=1e-6)


def test_gradients_flow_through_all_inputs():
    hr = torch.rand(1, 3, 3, 16, 16, requires_grad=True)
    kd_logits = torch.randn(1, 3, 64, 4, 4, requires_grad=True)
    flow_mask = torch.randn(3, 3, 4, 4, requires_grad=True)
    warped, ones = warp_image(hr.view(3, 3, 16, 16), flow_mask, scale=4)
    down = fgdf_downsample(warped.view(1, 3, 3, 16, 16), kd_logits, 4, ones.view(1, 3, 1, 16, 16))
    lr = torch.rand(1, 3, 3, 4, 4, requires_grad=True)
    kr = torch.randn(1, 3, 16 * 9, 4, 4, requires_grad=True)
    up = fgdf_upsample(lr, kr, 4)
    (down.square().mean() + up.square().mean()).backward()
    for tensor in (hr, kd_logits, flow_mask, lr, kr):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


IN_PLACE = ExecutionMode(in_place=True, autograd=False, autocast=False, channels_last=True)
OUT_OF_PLACE = ExecutionMode(in_place=False, autograd=True, autocast=False, channels_last=False)


def test_execution_mode_is_in_place_only_for_cpu_inference():
    x = torch.zeros(1)
    with torch.no_grad():
        assert ExecutionMode.for_inputs(x).in_place
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not ExecutionMode.for_inputs(x).in_place
    assert not ExecutionMode.for_inputs(x).in_place
    acc = torch.ones(3)
    assert IN_PLACE.add(acc, torch.ones(3)) is acc and torch.equal(acc, torch.full((3,), 2.0))
    assert OUT_OF_PLACE.add(acc, torch.ones(3)) is not acc and torch.equal(acc, torch.full((3,), 2.0))
    assert IN_PLACE.row_chunks(5, 10, 25) == [(0, 2), (2, 4), (4, 5)]
    assert OUT_OF_PLACE.row_chunks(5, 10, 25) == [(0, 5)]


@pytest.mark.parametrize('rows', [1, 2, 5])
def test_conv3x3_rows_assemble_the_whole_convolution(rows):
    x = torch.randn(2, 6, 7, 5)
    weight, bias = torch.randn(6, 3, 3, 3), torch.randn(6)
    expected = F.conv2d(x, weight, bias, padding=1, groups=2)
    # each range gets only the input rows it needs (one halo row each side inside the image)
    parts = [
        conv3x3_rows(x[:, :, max(lo - 1, 0) : hi + 1], max(lo - 1, 0), 7, lo, hi, weight, bias, groups=2)
        for lo, hi in [(r, min(r + rows, 7)) for r in range(0, 7, rows)]
    ]
    assert torch.allclose(torch.cat(parts, dim=2), expected, atol=1e-5)


def _conv3d_frames_of(groups: FrameGroups, frames: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> list:
    conv = torch.nn.Conv3d(weight.shape[1], weight.shape[0], 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv3d_frames(conv, groups.split(frames), groups, IN_PLACE)


@pytest.mark.parametrize('budget', [1, 10**9], ids=['frame_per_group', 'one_group'])
def test_conv3d_frames_is_conv3d_with_temporal_zero_padding(budget):
    b, t, c, h, w = 2, 3, 4, 5, 6
    frames = torch.randn(b * t, c, h, w)
    weight, bias = torch.randn(5, c, 3, 3, 3), torch.randn(5)
    groups = FrameGroups(b, t, h, w, c, budget)
    got = groups.gather(_conv3d_frames_of(groups, frames, weight, bias))
    clip = frames.view(b, t, c, h, w).transpose(1, 2)
    expected = F.conv3d(clip, weight, bias, padding=1).transpose(1, 2).reshape(b * t, 5, h, w)
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize('mode', [IN_PLACE, OUT_OF_PLACE], ids=['in_place', 'out_of_place'])
def test_pointwise_sum_is_a_1x1_convolution_of_the_concatenation(mode):
    parts = [torch.randn(2, c, 3, 4).contiguous(memory_format=torch.channels_last) for c in (3, 5)]
    weights = [torch.randn(6, 3), torch.randn(6, 5)]
    bias = torch.randn(6)
    residual = torch.randn(2, 6, 3, 4).contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(torch.cat(parts, dim=1), torch.cat(weights, dim=1)[:, :, None, None], bias) + residual
    with torch.no_grad():
        got = pointwise_sum(parts, weights, mode, pixel_chunk=5, bias=bias, residual=residual)
    assert torch.allclose(got, expected, atol=1e-5)


def test_pointwise_sum_may_write_over_its_input():
    x = torch.randn(1, 4, 3, 5).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 4)
    expected = F.conv2d(x, weight[:, :, None, None])
    got = pointwise_sum([x], [weight], IN_PLACE, pixel_chunk=4, out=x)
    assert got is x and torch.allclose(x, expected, atol=1e-5)


@pytest.mark.parametrize('budget', [1, 2 * 4 * 3 * 4 * 4, 10**9], ids=['frame', 'two_frames', 'all'])
def test_fold_frames_is_a_1x1_convolution_of_frames_in_channels(budget):
    """Frame groups may straddle samples; channel ``c * t + frame`` of the fold is frame ``frame``'s channel ``c``."""
    b, t, c, h, w = 2, 3, 3, 4, 4
    frames = torch.randn(b * t, c, h, w)
    weight, bias, previous = torch.randn(5, c * t), torch.randn(5), torch.randn(5, 5)
    groups = FrameGroups(b, t, h, w, c, budget)
    folded = frames.view(b, t, c, h, w).transpose(1, 2).reshape(b, c * t, h, w)
    expected = F.conv2d(folded, weight[:, :, None, None], bias)
    got = fold_frames(groups.split(frames), groups, weight, OUT_OF_PLACE, bias=bias)
    assert torch.allclose(got.view(b, 5, h, w), expected, atol=1e-5)
    # in place, after ``previous`` times the current content (the incoming ``Fw`` of an FRMA block)
    start = torch.randn(b, 5, h, w)
    with torch.no_grad():
        out = fold_frames_into(start.clone(), groups.split(frames), groups, weight, 7, bias, previous)
    assert torch.allclose(out, expected + F.conv2d(start, previous[:, :, None, None]), atol=1e-5)
