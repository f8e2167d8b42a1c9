"""Every shipped BasicSR option file refers to registered components and builds its network."""

from __future__ import annotations

from pathlib import Path

import fmanet_plugin  # noqa: F401

import pytest
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

OPTIONS = sorted((Path(__file__).resolve().parents[1] / 'options').glob('*.yml'))


@pytest.mark.parametrize('path', OPTIONS, ids=lambda p: p.name)
def test_option_file_is_consistent(path):
    opt = yaml.safe_load(path.read_text())
    if 'model_type' in opt:
        MODEL_REGISTRY.get(opt['model_type'])
    for dataset in opt.get('datasets', {}).values():
        DATASET_REGISTRY.get(dataset['type'])
    for key, value in opt.get('train', {}).items():
        if key.endswith('_opt'):
            LOSS_REGISTRY.get(value['type'])
    for metric in (opt.get('val') or {}).get('metrics', {}).values():
        METRIC_REGISTRY.get(metric['type'])
    net = build_network(dict(opt['network_g']))
    if path.name.startswith('fmanet_stage'):
        expected = {1: 3_225_837, 2: 9_766_503}[opt['network_g']['stage']]
        assert sum(p.numel() for p in net.parameters()) == expected
