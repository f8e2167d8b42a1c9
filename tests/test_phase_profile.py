"""fmanet_plugin.utils.phase_profile: per-phase FLOPs and times of both implementations at the tiny size.

Independent truths: a plain FlopCounterMode run (no recorder) for the total, the counter's own per-module
attribution (module hooks, not the phase markers) for the reference's Net_D, Net_R and attention, and FGDF's
multiply-adds counted by hand.
"""

from __future__ import annotations

import re

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.utils.phase_profile import PhaseRecorder, flop_counter, phase

import pytest
import torch
from conftest import TINY_NET

H, W = 8, 12
MARKED = ('net_d', 'net_r', 'fgdf', 'attention')


def _upsample_flops() -> int:
    """FGDF upsampling of TINY_NET by hand: every LR pixel gives c * s^2 = 3 * 16 outputs, each a sum of
    t * k_r^2 = 3 * 9 products."""
    return 2 * (H * W) * (3 * 16) * (3 * 9)


def _downsample_flops() -> int:
    """FGDF downsampling (recon) of TINY_NET by hand: every LR pixel's 3 channels and the all-ones normaliser,
    each a sum of t * k_d^2 = 3 * 16 products."""
    return 2 * (H * W) * (3 + 1) * (3 * 16)


def _run(impl: str, with_gt: bool) -> tuple[dict, int, dict]:
    """Phases of one call, the plain count of the same call, and the counter's per-module counts."""
    torch.manual_seed(0)
    model = FMANet(impl=impl, **TINY_NET).eval()
    lq = torch.rand(1, 3, 3, H, W)
    gt = torch.rand(1, 3, 3, 4 * H, 4 * W) if with_gt else None
    outputs = None if with_gt else ('output',)
    with torch.no_grad():
        with flop_counter() as plain:
            model(lq, gt, outputs=outputs)
        with flop_counter() as counter, PhaseRecorder(counter) as recorder:
            model(lq, gt, outputs=outputs)
    modules = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    return recorder.result(), plain.get_total_flops(), modules


@pytest.mark.parametrize('impl', ['reference', 'fast'])
@pytest.mark.parametrize('with_gt', [False, True], ids=['inference', 'all-outputs'])
def test_phases_add_up_to_the_whole_count(impl, with_gt):
    phases, total, _ = _run(impl, with_gt)
    assert total > 0
    assert sum(row['flops'] for name, row in phases.items() if name != 'total') == total
    assert phases['total']['flops'] == total
    for name in MARKED:  # every phase ran, took time and did counted work
        assert phases[name]['calls'] >= 1 and phases[name]['seconds'] > 0 and phases[name]['flops'] > 0, name
    assert phases['other']['flops'] == 0  # nothing counted runs outside the marked phases
    assert phases['attention']['calls'] == 2 * TINY_NET['num_frma']  # one per FRMA block of Net_D and Net_R
    expected_fgdf = _upsample_flops() + (_downsample_flops() if with_gt else 0)
    assert phases['fgdf']['flops'] == expected_fgdf


def test_reference_phases_agree_with_the_counters_module_attribution():
    """Exclusive phase FLOPs rebuild the counter's module totals: Net_D = its phase + its attention blocks,
    Net_R = its phase + its attention blocks + FGDF upsampling."""
    phases, _, modules = _run('reference', with_gt=False)
    attention = {net: 0 for net in ('net_d', 'net_r')}
    for name, flops in modules.items():
        match = re.fullmatch(r'FMANet\.(net_[dr])\.frma_blocks\.\d+\.attn_blocks\.\d+', name)
        if match:
            attention[match.group(1)] += flops
    assert attention['net_d'] > 0 and attention['net_r'] > 0
    assert phases['attention']['flops'] == attention['net_d'] + attention['net_r']
    assert phases['net_d']['flops'] + attention['net_d'] == modules['FMANet.net_d']
    assert phases['net_r']['flops'] + attention['net_r'] + phases['fgdf']['flops'] == modules['FMANet.net_r']


def test_markers_are_inert_without_a_recorder_and_recorders_do_not_nest():
    first, second = phase('net_d'), phase('attention')
    assert first is second  # the shared null context: nothing is allocated or timed
    with PhaseRecorder() as recorder:
        with phase('attention'), phase('fgdf'):  # nested: the inner phase's time is not the outer one's
            pass
        with pytest.raises(RuntimeError, match='already active'), PhaseRecorder():
            pass
    result = recorder.result()
    assert result['attention']['calls'] == result['fgdf']['calls'] == 1
    total = result['total']['seconds']
    assert total == pytest.approx(sum(row['seconds'] for name, row in result.items() if name != 'total'))
    assert phase('net_d') is first  # the recorder is gone after the block


def test_the_counter_sees_in_place_matrix_products():
    """The fast executor accumulates 1x1 convolutions with ``out.addmm_(a, b)``; torch's registry alone counts 0."""
    a, b = torch.rand(6, 5), torch.rand(5, 4)
    with flop_counter() as counter:
        torch.zeros(6, 4).addmm_(a, b)
        torch.zeros(3, 6, 4).baddbmm_(a.expand(3, 6, 5), b.expand(3, 5, 4))
    assert counter.get_total_flops() == 2 * 6 * 5 * 4 + 3 * 2 * 6 * 5 * 4
