"""tools/benchmark_speed.py: one measuring child at a tiny size, checked against an in-process reference run."""

from __future__ import annotations

import json
import time

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.losses.fmanet_loss import FMANetObjective
from fmanet_plugin.utils.phase_profile import flop_counter
from fmanet_plugin.utils.tiling import tiled_forward

import pytest
import torch
from conftest import TINY_NET
from test_losses import released_train_opt

from tools import benchmark_speed


def test_child_environment_sets_only_the_tuned_allocator(monkeypatch):
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '1')  # a setting of the caller must not leak into 'default'
    assert 'MALLOC_MMAP_THRESHOLD_' not in benchmark_speed.child_env('default', 2**32)
    assert benchmark_speed.child_env('tuned', 2**32)['MALLOC_MMAP_THRESHOLD_'] == str(2**32)


def test_training_loss_weights_come_from_the_released_options(official):
    train_opt = benchmark_speed.stage2_train_opt()
    for key, expected in released_train_opt(official).items():  # the weights stored with the parity fixture
        assert train_opt[key] == expected, key


def test_worker_measures_one_training_step(tmp_path, official):
    """A fast-implementation child under the tuned allocator: its loss and gradients are those of the reference
    implementation with the released loss weights, and it reports its own allocator setting and peak."""
    torch.manual_seed(0)
    reference = FMANet(impl='reference', **TINY_NET)
    torch.save(reference.state_dict(), tmp_path / 'weights.pth')
    spec = {
        'impl': 'fast', 'case': 'train', 'size': [8, 12], 'batch': 1, 'threads': 1, 'seed': 3, 'warmup': 0,
        'device': 'cpu', 'amp': None, 'compile': False, 'network': TINY_NET, 'weights': str(tmp_path / 'weights.pth'),
        'out': str(tmp_path / 'out.pt'), 'result': str(tmp_path / 'result.json'),
    }  # fmt: skip
    result = benchmark_speed.run_child(spec, benchmark_speed.child_env('tuned', 123456789))
    assert result['malloc_mmap_threshold'] == '123456789'
    assert result['peak_rss_mb'] >= result['rss_before_mb'] > 0 and result['wall'] > 0
    assert json.loads((tmp_path / 'result.json').read_text()) == result

    gen = torch.Generator().manual_seed(3)  # the child's inputs, drawn in the same order
    batch = {'lq': torch.rand(1, 3, 3, 8, 12, generator=gen)}
    batch['gt'] = torch.rand(1, 3, 3, 32, 48, generator=gen)
    batch['lq_sharp'] = torch.rand(1, 3, 3, 8, 12, generator=gen)
    batch['flow'] = torch.randn(1, 3, 2, 8, 12, generator=gen)
    outputs = reference.train()(batch['lq'], batch['gt'])
    loss = sum(FMANetObjective(released_train_opt(official), stage=2)(outputs, batch).values())
    loss.backward()
    child = torch.load(spec['out'], weights_only=True)
    torch.testing.assert_close(child['output'], outputs['output'].detach(), atol=1e-5, rtol=0)
    assert abs(float(child['loss']) - float(loss)) <= 1e-5 * max(1.0, abs(float(loss)))
    grads = {name: p.grad for name, p in reference.named_parameters()}
    assert set(child['grads']) == set(grads)
    largest = max(g.abs().max().item() for g in grads.values())
    assert max((child['grads'][k] - g).abs().max().item() for k, g in grads.items()) <= 1e-3 * largest


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live (not yet reaped, not a zombie) process."""
    try:
        state = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != 'Z'


def test_background_load_starts_its_loops_and_stops_them():
    with benchmark_speed.BackgroundLoad(2) as load:
        pids = [proc.pid for proc in load.procs]
        assert len(set(pids)) == 2 and all(_running(pid) for pid in pids)
        for pid in pids:  # the documented single-threaded loop, not something else
            assert 'cpu_load_loop.py' in open(f'/proc/{pid}/cmdline').read()
            assert 'OMP_NUM_THREADS=1' in open(f'/proc/{pid}/environ').read().split('\0')
        time.sleep(0.5)  # a stop right after 'ready' may come before the first timed product (rate 0)
    assert not any(_running(pid) for pid in pids)
    assert all(proc.returncode is not None for proc in load.procs)
    report = load.report
    assert report['loops'] == 2 and report['alive_at_end'] == 2 and report['pids'] == pids
    assert len(report['loop_gflops']) == 2 and all(rate > 0 for rate in report['loop_gflops'])


def test_both_implementations_run_beside_the_same_loops(monkeypatch):
    """A whole tiny run with ``--background-load 1``: every child saw one running loop, none survives, and the
    children applied the thread rule with OMP_NUM_THREADS winning."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setattr(benchmark_speed, 'sgemm_gflops', lambda threads: 1.0)  # seconds of GEMM, not under test
    args = benchmark_speed.parse_args(
        ['--cases', 'inference', '--size', '8x12', '--allocators', 'default', '--background-load', '1']
    )
    args.network = TINY_NET
    report = benchmark_speed.run(args)
    (entry,) = report['cases']
    pids = []
    for impl in benchmark_speed.IMPLS:
        (background,) = entry[impl]['background']
        assert background['loops'] == 1 and background['alive_at_end'] == 1 and len(background['loop_gflops']) == 1
        assert entry[impl]['threads'] == [1] and entry[impl]['thread_reasons'] == ['OMP_NUM_THREADS=1']
        pids += background['pids']
    assert len(set(pids)) == 2 and not any(_running(pid) for pid in pids)  # a fresh loop per child, all stopped
    assert entry['diff']['output'] <= 1e-5  # the same inputs reached both children
    assert 'loops GFLOP/s' in benchmark_speed.format_report(report)


def test_worker_splits_its_timed_call_into_phases(tmp_path):
    """``--phases`` in a fast inference child: the phases' FLOPs add up to an in-process FlopCounterMode count of
    the same call, their times to at most the timed call's wall time, and every phase has operators."""
    torch.manual_seed(0)
    model = FMANet(impl='fast', **TINY_NET).eval()
    torch.save(model.state_dict(), tmp_path / 'weights.pth')
    spec = {
        'impl': 'fast', 'case': 'inference', 'size': [8, 12], 'batch': 1, 'threads': 1, 'seed': 3, 'warmup': 0,
        'device': 'cpu', 'amp': None, 'compile': False, 'network': TINY_NET, 'weights': str(tmp_path / 'weights.pth'),
        'out': str(tmp_path / 'out.pt'), 'result': str(tmp_path / 'result.json'), 'phases': True, 'phase_ops': 2,
        'sgemm_size': 128,
    }  # fmt: skip
    result = benchmark_speed.run_child(spec, benchmark_speed.child_env('default', 0))
    phases = result['phases']
    table = phases['table']
    with torch.no_grad(), flop_counter() as counter:
        model(torch.rand(1, 3, 3, 8, 12), outputs=('output',))
    assert table['total']['flops'] == counter.get_total_flops() > 0
    assert sum(row['flops'] for name, row in table.items() if name != 'total') == table['total']['flops']
    assert 0 < table['total']['seconds'] <= result['wall']
    assert {'net_d', 'net_r', 'fgdf', 'attention'} <= set(phases['ops']) and phases['sgemm_gflops'] > 0
    assert phases['fgdf_analytic_flops'] == table['fgdf']['flops']
    entry = {'case': 'inference', 'allocator': 'default', 'size': [8, 12], 'batch': 1, 'fast': result}
    result['threads'], result['other_load'] = [result['threads']], [result['other_load']]
    text = '\n'.join(benchmark_speed.format_phase_section(entry, 'fast'))
    assert '| FGDF |' in text and '% of SGEMM' in text and '| **total** |' in text


@pytest.mark.parametrize(
    'case, size, batch, tile',
    [('inference', (20, 28), 2, 0), ('inference', (20, 28), 1, 12), ('train', (8, 12), 2, 0)],
)
def test_flops_are_counted_at_the_measured_size(case, size, batch, tile):
    """The main table's count (on fake tensors) equals FlopCounterMode's count of a real call at that size
    (under ``tile`` the tiled call: 2x3 tiles of one shape), for both implementations."""
    counted = benchmark_speed.count_flops(case, size, batch, TINY_NET, tile=tile, tile_overlap=4)
    for impl in benchmark_speed.IMPLS:
        torch.manual_seed(0)
        model = FMANet(impl=impl, **TINY_NET)
        lq = torch.rand(batch, 3, 3, *size)
        with flop_counter() as counter:
            if case == 'inference':
                with torch.no_grad():
                    net = model.eval()
                    tiled_forward(lambda x, net=net: net(x, outputs=('output',))['output'], lq, 4, tile, 4)
            else:
                data = {
                    'lq': lq,
                    'gt': torch.rand(batch, 3, 3, 4 * size[0], 4 * size[1]),
                    'lq_sharp': torch.rand(batch, 3, 3, *size),
                    'flow': torch.randn(batch, 3, 2, *size),
                }
                outputs = model.train()(lq, data['gt'])
                sum(FMANetObjective(benchmark_speed.stage2_train_opt(), stage=2)(outputs, data).values()).backward()
        assert counted[impl] == counter.get_total_flops() > 0, impl
