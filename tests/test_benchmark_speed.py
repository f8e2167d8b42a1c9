"""tools/benchmark_speed.py end to end at a tiny size: children per implementation and allocator setting."""

from __future__ import annotations

import json

import torch

from tools import benchmark_speed


def test_child_environment_sets_only_the_tuned_allocator(monkeypatch):
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '1')  # a setting of the caller must not leak into 'default'
    assert 'MALLOC_MMAP_THRESHOLD_' not in benchmark_speed.child_env('default', 2**32)
    assert benchmark_speed.child_env('tuned', 2**32)['MALLOC_MMAP_THRESHOLD_'] == str(2**32)


def test_speed_tool_compares_implementations(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / 'speed.json'
    benchmark_speed.main(
        ['--size', '8x12', '--train-size', '8x8', '--batch', '1', '--threads', '1', '--allocators', 'tuned',
         '--mmap-threshold', '123456789', '--json', str(out)]
    )  # fmt: skip
    report = json.loads(out.read_text())
    cases = {(c['case'], c['allocator']): c for c in report['cases']}
    assert set(cases) == {('inference', 'tuned'), ('train', 'tuned')}
    for (case, _), entry in cases.items():
        # the two implementations agree (released configuration, seeded random weights)
        assert entry['diff']['output'] <= 1e-4
        if case == 'train':
            assert entry['diff']['loss'] <= 1e-5 and entry['diff']['grads_rel_to_max'] <= 1e-3
        for impl in ('reference', 'fast'):
            result = entry[impl]
            # each child ran under its own allocator setting and measured its own peak
            assert result['malloc_mmap_threshold'] == '123456789'
            assert result['peak_rss_mb'] >= result['rss_before_mb'] > 0 and result['gflop'] > 0
        assert entry['speedup'] == entry['reference']['wall'] / entry['fast']['wall']
    assert 'inference 8x12' in benchmark_speed.format_report(report)
    assert torch.get_num_threads() == threads  # the caller's thread setting survives
