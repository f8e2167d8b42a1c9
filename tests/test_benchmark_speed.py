"""tools/benchmark_speed.py: one measuring child at a tiny size, checked against an in-process reference run."""

from __future__ import annotations

import json

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.losses.fmanet_loss import FMANetObjective

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
