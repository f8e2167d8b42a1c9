"""Paper-size baseline options (options/baselines/*.yml without demo_): registered types, the papers' model sizes."""

from __future__ import annotations

from pathlib import Path

import fmanet_plugin  # noqa: F401

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PAPER_OPTIONS = sorted(p for p in (ROOT / 'options/baselines').glob('*.yml') if not p.stem.startswith('demo_'))

# Parameters reported by the papers (millions): EDVR (CVPRW 2019; EDVR-M / EDVR-L), BasicVSR and IconVSR
# (CVPR 2021), BasicVSR++ (CVPR 2022).
PAPER_PARAMS = {'edvr_m': 3.3, 'edvr_l': 20.6, 'basicvsr': 6.3, 'iconvsr': 8.7, 'basicvsrpp': 7.3}


def test_all_paper_options_present():
    names = {p.stem for p in PAPER_OPTIONS}
    assert names == {'edvr_m_wotsa', 'edvr_m', 'edvr_l_wotsa', 'edvr_l', 'basicvsr', 'iconvsr', 'basicvsrpp'}


@pytest.mark.parametrize('path', PAPER_OPTIONS, ids=[p.stem for p in PAPER_OPTIONS])
def test_paper_option(path):
    opt = yaml.safe_load(path.read_text())
    assert MODEL_REGISTRY.get(opt['model_type'])
    for dataset in opt['datasets'].values():
        assert DATASET_REGISTRY.get(dataset['type'])
        assert dataset['dataroot_lq'].endswith('train_blur_bicubic/X4') and dataset['dataroot_gt'].endswith('sharp')
    assert opt['datasets']['train']['exclude_clips'] == opt['datasets']['val']['clips'] == ['000', '011', '015', '020']
    network = {k: (None if k.endswith('_path') else v) for k, v in opt['network_g'].items()}  # no weights offline
    params = sum(p.numel() for p in build_network(network).parameters()) / 1e6
    stem = path.stem.removesuffix('_wotsa')
    if path.stem.endswith('_wotsa'):
        assert params < PAPER_PARAMS[stem]  # the same network without TSA fusion
    elif stem == 'basicvsrpp' and not torch.cuda.is_available():
        # basicsr builds BasicVSR++'s deformable alignment only with CUDA: smaller on a CPU-only machine.
        assert params < PAPER_PARAMS[stem] - 1
    else:
        assert round(params, 1) == PAPER_PARAMS[stem]
