"""FMANet(impl='fast') computes the reference implementation's function: outputs and gradients, several configs."""

from __future__ import annotations

import copy

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.archs.fmanet_fast import FastExecutor, MemoryBudgets
from fmanet_plugin.ops import fgdf_downsample, fgdf_downsample_chunked, fgdf_upsample, fgdf_upsample_rows

import pytest
import torch
import torch.nn.functional as F
from conftest import RELEASED_OUTPUTS, network_opt, to_btchw
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

TINY = dict(
    dim=12, ds_kernel_size=8, us_kernel_size=3, num_rdb=2, growth_rate=4, num_dense_layer=2, num_flow=3, num_frma=2,
    num_attn_block=1, num_heads=2,
)  # fmt: skip
CONFIGS = {
    'tiny': TINY,
    'bias_t5': {**TINY, 'dim': 15, 'num_seq': 5, 'num_heads': 3, 'bias': True, 'num_dense_layer': 3},
    'wide_kernels': {**TINY, 'ds_kernel_size': 12, 'us_kernel_size': 5, 'num_attn_block': 2, 'num_frma': 3},
}
# (batch, height, width): non-square, odd sizes, a frame smaller than the composed 5x5 kernel needs
SIZES = [(2, 9, 14), (1, 11, 7)]
# budgets so small that every frame group, row chunk, pixel chunk, warp piece and sample chunk has its minimum size
SMALLEST_BUDGETS = MemoryBudgets(
    chunk_bytes=1, attention_chunk_bytes=1, restore_chunk_bytes=1, pixel_chunk=5, warp_flows_per_piece=1
)


def _pair(config: dict, stage: int = 2, seed: int = 0, budgets: MemoryBudgets | None = None) -> tuple[FMANet, FMANet]:
    torch.manual_seed(seed)
    reference = FMANet(impl='reference', stage=stage, **config)
    with torch.no_grad():  # move every parameter off its initial value so that each one matters
        for param in reference.parameters():
            param.add_(0.1 * torch.randn_like(param))
    fast = FMANet(impl='fast', stage=stage, **config)
    fast.load_state_dict(reference.state_dict())
    if budgets is not None:
        fast.fast_executor = FastExecutor(budgets)
    return reference, fast


def _inputs(config: dict, batch: int, h: int, w: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    t = config.get('num_seq', 3)
    return torch.rand(batch, t, 3, h, w, generator=gen), torch.rand(batch, t, 3, 4 * h, 4 * w, generator=gen)


def _assert_outputs_close(got: dict, expected: dict, rtol: float = 2e-5) -> None:
    """Equal up to float32 round-off: both implementations are ~1e-5 (relative to the output range) away from
    a float64 evaluation of the reference at these configurations."""
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        assert (got[key] - value).abs().max().item() <= rtol * max(1.0, value.abs().max().item()), key


def _assert_grad_close(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to float32 round-off, relative to the gradient's range: with two threads the float32 reference's
    own gradients are up to ~5e-5 of their maximum away from a float64 evaluation at these configurations."""
    assert (got - expected).abs().max().item() <= 2e-4 * expected.abs().max().item() + 1e-12, name


@pytest.fixture(params=[MemoryBudgets(), SMALLEST_BUDGETS], ids=['default_chunks', 'tiny_chunks'])
def budgets(request) -> MemoryBudgets:
    """The fast executor's default memory budgets, and the smallest ones."""
    return request.param


@pytest.mark.parametrize('name', sorted(CONFIGS))
@pytest.mark.parametrize('size', SIZES, ids=lambda s: 'x'.join(map(str, s)))
def test_forward_matches_reference(name, size, budgets):
    config = CONFIGS[name]
    reference, fast = _pair(config, budgets=budgets)
    lq, gt = _inputs(config, *size)
    with torch.no_grad():
        _assert_outputs_close(fast.eval()(lq, gt), reference.eval()(lq, gt))
        # without gt: the inference schedule (composed kernel embedding, workspace, skipped branches)
        _assert_outputs_close(fast(lq, outputs=['output']), reference(lq, outputs=['output']))
        _assert_outputs_close(fast(lq), reference(lq))


class LeakyReluBranches(TorchDispatchMode):
    """Records (``masks=None``) or imposes which side of zero every LeakyReLU input lies on, call by call.

    A float32 pre-activation within round-off of zero (one of ~500k here lies 1e-7 of its tensor's range from it)
    can land on the other side of the kink than in float64, which switches that element's slope between 1 and
    0.2: a branch choice, not an accuracy error, and which side float32 picks depends on the CPU's summation
    order. Replaying the float32 run's branches in float64 gives the exact gradient of the piece float32 is on.
    """

    def __init__(self, masks: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.masks = [] if masks is None else masks
        self.replay, self.calls, self.by_storage = masks is not None, 0, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten.leaky_relu.default, torch.ops.aten.leaky_relu_.default):
            x, slope = args[0], args[1] if len(args) > 1 else kwargs.get('negative_slope', 0.01)
            if not self.replay:
                self.masks.append(x > 0)
                return func(*args, **kwargs)
            mask = self.masks[self.calls]
            self.calls += 1
            out = torch.where(mask, x, x * slope)
            if func is torch.ops.aten.leaky_relu_.default:
                out = x.copy_(out)
            for saved in (x, out):  # backward gets the input, or the result of the in-place form
                self.by_storage[(saved.data_ptr(), tuple(saved.shape))] = mask
            return out
        if func is torch.ops.aten.leaky_relu_backward.default and self.replay:
            grad, saved, slope = args[0], args[1], args[2]
            return torch.where(self.by_storage[(saved.data_ptr(), tuple(saved.shape))], grad, grad * slope)
        return func(*args, **kwargs)


def _weighted_output_gradients(model: FMANet, lq: torch.Tensor, gt: torch.Tensor, dtype: torch.dtype) -> tuple:
    model.train()
    outputs = model(lq.to(dtype), gt.to(dtype))
    # every output contributes, with position-dependent weights
    loss = sum((v * torch.linspace(-1, 1, v.numel(), dtype=dtype).view(v.shape)).sum() for v in outputs.values())
    return torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)


@pytest.mark.parametrize('name', ['tiny', 'bias_t5'])
def test_gradients_match_reference(name, budgets):
    """The fast path's gradients are the reference's: in float64 to 1e-9 of each gradient's maximum (the same
    function), and in float32 within 2e-4 of a float64 evaluation that takes the float32 run's LeakyReLU branches
    (see :class:`LeakyReluBranches`; without it one flipped element of ``bias_t5`` costs 1.7e-3 on an AVX-512
    CPU, for the float32 reference as much as for the fast path)."""
    config = CONFIGS[name]
    reference, fast = _pair(config, budgets=budgets)
    lq, gt = _inputs(config, 2, 10, 13)
    fast64 = copy.deepcopy(fast).double()
    reference64 = _weighted_output_gradients(reference.double(), lq, gt, torch.float64)
    with LeakyReluBranches() as recorder:
        fast32 = _weighted_output_gradients(fast, lq, gt, torch.float32)
    with LeakyReluBranches(recorder.masks) as replayer:
        fast64_same_branches = _weighted_output_gradients(fast64, lq, gt, torch.float64)
    assert replayer.calls == len(recorder.masks) > 0
    fast64 = _weighted_output_gradients(fast64, lq, gt, torch.float64)
    names = [n for n, _ in reference.named_parameters()]
    for name_, g_ref, g_fast64, g_fast64_b, g_fast32 in zip(names, reference64, fast64, fast64_same_branches, fast32):
        assert (g_ref is None) == (g_fast64 is None) == (g_fast32 is None), name_
        if g_ref is not None:
            assert (g_fast64 - g_ref).abs().max().item() <= 1e-9 * g_ref.abs().max().item() + 1e-15, name_
            _assert_grad_close(g_fast32.double(), g_fast64_b, name_)


def test_gradients_without_gt_and_input_gradient():
    """Autograd through the no-``gt`` path (no composed kernels under autograd) and into the input frames."""
    reference, fast = _pair(TINY)
    lq, _ = _inputs(TINY, 1, 9, 12)
    grads = []
    for model in (reference, fast):
        x = lq.clone().requires_grad_()
        out = model.eval()(x, outputs=['output'])['output']
        grads.append(torch.autograd.grad((out * out).sum(), x)[0])
    _assert_grad_close(grads[1], grads[0], 'lq')


def test_stage1_matches_reference(budgets):
    reference, fast = _pair(TINY, stage=1, budgets=budgets)
    lq, gt = _inputs(TINY, 2, 9, 11)
    with torch.no_grad():
        _assert_outputs_close(fast(lq, gt), reference(lq, gt))
        _assert_outputs_close(fast(lq), reference(lq))


def test_released_fixture_both_implementations(official, small_model):
    """Both implementations reproduce the released model's outputs (tests/data/official_small.pt)."""
    reference = FMANet(impl='reference', **network_opt(official))
    reference.load_state_dict(small_model.state_dict())
    x, y = to_btchw(official['x']), to_btchw(official['y'])
    with torch.no_grad():
        for model in (small_model.eval(), reference.eval()):
            outputs = model(x, y)
            for released, ours in RELEASED_OUTPUTS.items():
                expected = to_btchw(official['outputs_eval'][released])
                assert outputs[ours].shape == expected.shape, (model.impl, ours)
                assert (outputs[ours] - expected).abs().max().item() <= 1e-5, (model.impl, ours)
            assert (model(x)['output'] - official['output_lr_only']).abs().max().item() <= 1e-5


def test_checkpoints_are_interchangeable():
    reference, fast = _pair(TINY)
    assert list(reference.state_dict()) == list(fast.state_dict())
    for key, value in reference.state_dict().items():
        assert torch.equal(value, fast.state_dict()[key])


def test_inference_mode_skips_unrequested_branches():
    _, fast = _pair(TINY)
    lq, _ = _inputs(TINY, 1, 12, 12)
    flops = {}
    for outputs in (None, ('output',)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            result = fast.eval()(lq, outputs=outputs)
        flops[outputs] = counter.get_total_flops()
        assert set(result) == ({'output'} if outputs else {'output', 'lr_warp', 'image_flow', 'anchor_d', 'anchor_r'})
    assert flops[('output',)] < flops[None]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match='impl'):
        FMANet(impl='turbo', **TINY)
    model = FMANet(stage=1, **TINY)
    lq, _ = _inputs(TINY, 1, 8, 8)
    with pytest.raises(ValueError, match=r"outputs \['output'\]"):
        model(lq, outputs=['output'])
    with pytest.raises(ValueError, match='recon'):
        FMANet(**TINY)(lq, outputs=['recon'])
    bad_options = [
        ({'dim': 13}, 'divisible by num_flow=3'),
        ({'num_heads': 5}, 'divisible by num_heads=5'),
        ({'num_seq': 4}, 'num_seq must be odd'),
        ({'ds_kernel_size': 7}, 'ds_kernel_size - scale must be even'),
        ({'us_kernel_size': 4}, 'us_kernel_size must be odd'),
        ({'scale': 2}, 'scale must be 4'),
        ({'stage': 3}, 'stage must be 1'),
    ]
    for options, message in bad_options:
        with pytest.raises(ValueError, match=message):
            FMANet(**{**TINY, **options})


@pytest.mark.parametrize('with_ones', [False, True])
def test_chunked_fgdf_downsample_matches_op(with_ones):
    gen = torch.Generator().manual_seed(0)
    b, t, c, h, w, k, s = 2, 3, 3, 7, 9, 8, 4
    frames = torch.rand(b, t, c, s * h, s * w, generator=gen, requires_grad=True)
    kernels = torch.randn(b, t, k * k, h, w, generator=gen, requires_grad=True)
    ones = torch.rand(b, t, 1, s * h, s * w, generator=gen) if with_ones else None
    expected = fgdf_downsample(frames, kernels, s, ones)
    got = fgdf_downsample_chunked(frames, kernels, s, ones, max_chunk_bytes=1)  # one LR row per chunk
    assert torch.allclose(got, expected, atol=1e-6)
    weights = torch.randn_like(expected)
    g_expected = torch.autograd.grad((expected * weights).sum(), (frames, kernels))
    g_got = torch.autograd.grad((got * weights).sum(), (frames, kernels))
    for a, e in zip(g_got, g_expected):
        assert torch.allclose(a, e, atol=1e-6)


@pytest.mark.parametrize('rows', [1, 2, 6])
def test_fgdf_upsample_rows_matches_op(rows):
    """Row ranges of FGDF upsampling (replicate padding by k_r // 2, as documented) assemble the whole op."""
    gen = torch.Generator().manual_seed(0)
    b, t, c, h, w, k, s = 2, 3, 3, 6, 5, 3, 4
    frames = torch.rand(b, t, c, h, w, generator=gen)
    kernels = torch.randn(b, t, s * s * k * k, h, w, generator=gen)
    padded = F.pad(frames.view(b * t, c, h, w), (k // 2,) * 4, mode='replicate').view(b, t, c, h + k - 1, w + k - 1)
    got = torch.cat([fgdf_upsample_rows(padded, kernels[..., lo : lo + rows, :], lo, s) for lo in range(0, h, rows)], 2)
    assert torch.allclose(got, fgdf_upsample(frames, kernels, s), atol=1e-6)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_autocast_error_no_larger_than_reference(dtype):
    """Under CPU autocast (the mixed-precision path a GPU takes too) the fast schedule is as accurate as the
    reference: its distance to the float32 output is at most twice the reference's own autocast error
    (the two round in different places, so they are not equal to each other)."""
    reference, fast = _pair(TINY)
    lq, gt = _inputs(TINY, 1, 10, 13)
    with torch.no_grad():
        truth = reference.eval()(lq)['output']
        errors = {}
        for model in (reference, fast):
            with torch.autocast('cpu', dtype=dtype):
                out = model.eval()(lq, outputs=['output'])['output']
            errors[model.impl] = (out.float() - truth).abs().max().item()
    assert 0 < errors['reference'] < 0.1
    assert errors['fast'] <= 2 * errors['reference']
    with torch.autocast('cpu', dtype=dtype):  # and training steps run: finite loss and gradients
        out = fast.train()(lq, gt)
        loss = sum(v.float().abs().mean() for v in out.values())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in fast.parameters() if p.grad is not None)
