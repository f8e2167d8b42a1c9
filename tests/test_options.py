"""Every shipped BasicSR option file refers to registered components and builds its network."""

from __future__ import annotations

import os
import subprocess
import sys
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


# ------------------------------------------------------- train.scheduler and val: keys from basicsr's own code

ROOT = Path(__file__).resolve().parents[1]


def demo_stage2() -> dict:
    return yaml.safe_load((ROOT / 'options/demo_stage2.yml').read_text())


@pytest.mark.parametrize('path', sorted((ROOT / 'options').glob('**/*.yml')), ids=lambda p: p.name)
def test_shipped_option_files_pass_the_key_checks(path):
    from fmanet_plugin.utils.options import prepare_options

    prepare_options(yaml.safe_load(path.read_text()), str(path))


def _scheduler_key(opt):
    opt['train']['scheduler']['period'] = opt['train']['scheduler'].pop('periods')


def _multistep_typo(opt):
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestone': [100], 'gamma': 0.5}


def _missing_periods(opt):
    del opt['train']['scheduler']['periods']


def _scheduler_type(opt):
    opt['train']['scheduler']['type'] = 'CosineAnnealingLR'


def _val_key(opt):
    opt['val']['val_frequency'] = opt['val'].pop('val_freq')


def _metric_key(opt):
    opt['val']['metrics']['ssim']['crop_bordr'] = opt['val']['metrics']['ssim'].pop('crop_border')


def _metric_extra_key(opt):  # basicsr's metrics swallow unknown keys (**kwargs): silently ignored without the check
    opt['val']['metrics']['psnr']['test_y_chanel'] = True


def _metric_better(opt):
    opt['val']['metrics']['tof']['better'] = 'lowr'


def _metric_type(opt):
    opt['val']['metrics']['psnr']['type'] = 'calculate_psnrr'


@pytest.mark.parametrize(
    'edit, expected',
    [
        (_scheduler_key, "train.scheduler (CosineAnnealingRestartLR): unknown option 'period' (did you mean periods?)"),
        (_multistep_typo, "train.scheduler (MultiStepLR): unknown option 'milestone' (did you mean milestones?)"),
        (_missing_periods, "train.scheduler (CosineAnnealingRestartLR): option 'periods' is required"),
        (
            _scheduler_type,
            "train.scheduler: type 'CosineAnnealingLR' is not a scheduler basicsr builds (did you mean "
            'CosineAnnealingRestartLR?) (one of MultiStepLR, MultiStepRestartLR, CosineAnnealingRestartLR)',
        ),
        (_val_key, "val (FMANetModel): unknown option 'val_frequency' (did you mean val_freq?)"),
        (_metric_key, "val.metrics.ssim (calculate_ssim): unknown option 'crop_bordr' (did you mean crop_border?)"),
        (
            _metric_extra_key,
            "val.metrics.psnr (calculate_psnr): unknown option 'test_y_chanel' (did you mean test_y_channel?)",
        ),
        (_metric_better, "val.metrics.tof (calculate_tof): option 'better' must be 'higher' or 'lower', got 'lowr'"),
        (_metric_type, "val.metrics.psnr: type 'calculate_psnrr' is not registered (did you mean calculate_psnr?)"),
    ],
    ids=lambda v: v.__name__.strip('_') if callable(v) else None,
)
def test_scheduler_and_val_typos_name_the_key(edit, expected):
    from fmanet_plugin.utils.errors import UserInputError
    from fmanet_plugin.utils.options import prepare_options

    opt = demo_stage2()
    edit(opt)
    with pytest.raises(UserInputError) as error:
        prepare_options(opt, 'x.yml')
    assert str(error.value) == f'x.yml: {expected}'


def test_scheduler_keys_follow_the_class_signature():
    """Every argument of basicsr's scheduler classes but the optimizer is accepted (none is hand-listed)."""
    from fmanet_plugin.utils.options import prepare_options

    opt = demo_stage2()
    opt['train']['scheduler'] = {'type': 'MultiStepRestartLR', 'milestones': [10, 20], 'gamma': 0.5,
                                 'restarts': [15], 'restart_weights': [1], 'last_epoch': -1}  # fmt: skip
    prepare_options(opt, 'x.yml')
    opt['val']['metrics']['psnr']['input_order'] = 'HWC'  # calculate_psnr's own argument
    prepare_options(opt, 'x.yml')


@pytest.mark.parametrize(
    'old, new, expected',
    [
        ('periods: [500]', 'period: [500]', "unknown option 'period' (did you mean periods?)"),
        ('val_freq: 500', 'val_frequency: 5', "unknown option 'val_frequency' (did you mean val_freq?)"),
    ],
)
def test_train_tool_prints_one_line_for_a_typo(tmp_path, old, new, expected):
    text = (ROOT / 'options/demo_stage2.yml').read_text()
    assert old in text
    path = tmp_path / 'x.yml'
    path.write_text(text.replace(old, new))
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/train.py'), '-opt', str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f'error: {path}: ')
    assert proc.stderr.strip().endswith(expected)
    assert not (tmp_path / 'experiments').exists()  # refused before anything is written
