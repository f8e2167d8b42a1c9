"""The demo baselines of options/baselines/: basicsr's build_model, one training iteration, one validation."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import fmanet_plugin  # noqa: F401

import pytest
import torch
import yaml
from basicsr.data import build_dataset
from basicsr.models import build_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_BASELINES = sorted((ROOT / 'options/baselines').glob('demo_*.yml'))


@pytest.fixture(scope='module')
def tiny_demo(tmp_path_factory) -> Path:
    """Two demo clips of 5 frames, HR 32 x 32 (LR 8 x 8); clip 000 for training, 001 for validation."""
    out = tmp_path_factory.mktemp('baselines') / 'demo'
    cmd = [
        sys.executable,
        str(ROOT / 'tools/make_demo_data.py'),
        '--out',
        str(out),
        '--num-clips',
        '2',
        '--val-clips',
        '1',
    ]
    subprocess.run(cmd + ['--num-frames', '5', '--height', '32', '--width', '32', '--subframes', '3'], check=True)
    return out


def parsed_options(path: Path, data_root: Path, work: Path) -> dict:
    """The option file as basicsr's parse_options would hand it to build_model, on ``data_root``."""
    text = path.read_text().replace('datasets/demo', str(data_root))
    opt = yaml.safe_load(text)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(
        experiments_root=str(work), models=str(work / 'models'), training_states=str(work / 'states'),
        log=str(work), visualization=str(work / 'visualization'),
    )  # fmt: skip
    for phase, dataset in opt['datasets'].items():
        dataset.update(phase=phase, scale=opt['scale'])
    train = opt['datasets']['train']
    train.update(gt_size=32, batch_size_per_gpu=1)
    return opt


def make_edvr_extractor(work: Path) -> dict[str, torch.Tensor]:
    """demo_iconvsr.yml's ``edvr_path`` made as documented: an EDVR of demo_edvr_for_iconvsr.yml (random weights
    in place of its training) through tools/make_iconvsr_edvr.py; returns the EDVR's weights."""
    from basicsr.archs.edvr_arch import EDVR

    edvr_opt = ROOT / 'options/baselines/demo_edvr_for_iconvsr.yml'
    network = {k: v for k, v in yaml.safe_load(edvr_opt.read_text())['network_g'].items() if k != 'type'}
    edvr = EDVR(**network)
    with torch.no_grad():
        for tensor in edvr.state_dict().values():
            tensor.copy_(torch.randn_like(tensor) * 0.1)
    torch.save({'params': edvr.state_dict()}, work / 'edvr.pth')
    cmd = [sys.executable, str(ROOT / 'tools/make_iconvsr_edvr.py'), str(work / 'edvr.pth'), '--out']
    cmd += [str(work / 'extractor.pth'), '--iconvsr-opt', str(ROOT / 'options/baselines/demo_iconvsr.yml')]
    subprocess.run(cmd + ['--edvr-opt', str(edvr_opt)], check=True)
    return edvr.state_dict()


@pytest.mark.parametrize('option_file', DEMO_BASELINES, ids=[p.stem for p in DEMO_BASELINES])
def test_demo_baseline_trains_and_validates(option_file, tiny_demo, tmp_path):
    torch.manual_seed(0)
    opt = parsed_options(option_file, tiny_demo, tmp_path)
    assert opt['datasets']['train']['dataroot_lq'].startswith(str(tiny_demo))
    train_set = build_dataset(opt['datasets']['train'])
    val_set = build_dataset(opt['datasets']['val'])
    edvr_state = None
    if opt['network_g'].get('edvr_path'):  # IconVSR: its pretrained keyframe extractor
        edvr_state = make_edvr_extractor(tmp_path)
        opt['network_g']['edvr_path'] = str(tmp_path / 'extractor.pth')
    model = build_model(opt)
    if edvr_state is not None:
        extractor = model.get_bare_model(model.net_g).edvr.state_dict()
        assert all(torch.equal(v, edvr_state[k]) for k, v in extractor.items())

    batch = torch.utils.data.default_collate([train_set[0]])
    num_frame = opt['datasets']['train']['num_frame']
    recurrent = opt['model_type'] == 'VSRDBVideoRecurrentModel'
    assert batch['lq'].shape == (1, num_frame, 3, 8, 8)
    assert batch['gt'].shape == ((1, num_frame, 3, 32, 32) if recurrent else (1, 3, 32, 32))

    before = copy.deepcopy(model.get_bare_model(model.net_g).state_dict())
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert math.isfinite(model.log_dict['l_pix'])
    after = model.get_bare_model(model.net_g).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), 'one iteration changed no weight'

    loader = torch.utils.data.DataLoader(val_set, batch_size=1)
    model.validation(loader, 1, None, save_img=False)
    results = model.metric_results['001']  # (frames, metrics): every frame of the validation clip scored
    assert results.shape == (5, len(opt['val']['metrics']))
    psnr = results[:, 0]
    assert torch.all(torch.isfinite(psnr)) and torch.all(psnr > 5)
    assert model.best_metric_results['demo_val']['psnr']['iter'] == 1


SAMPLER_CASES = [p for p in DEMO_BASELINES if p.stem in ('demo_edvr', 'demo_basicvsr')]  # sliding, recurrent


@pytest.mark.parametrize('option_file', SAMPLER_CASES, ids=[p.stem for p in SAMPLER_CASES])
def test_baseline_training_sets_take_the_resumable_sampler_keys(option_file, tiny_demo, tmp_path):
    from fmanet_plugin.data.resumable_sampler import SampleKey

    train_set = build_dataset(parsed_options(option_file, tiny_demo, tmp_path)['datasets']['train'])
    first, again = train_set[SampleKey(0, 1234)], train_set[SampleKey(0, 1234)]  # tools/train.py's sampler
    assert torch.equal(first['lq'], again['lq']) and torch.equal(first['gt'], again['gt'])  # draws from the seed
    others = [train_set[SampleKey(0, seed)]['lq'] for seed in range(8)]
    assert any(not torch.equal(first['lq'], other) for other in others)  # the seed, not a constant, decides
