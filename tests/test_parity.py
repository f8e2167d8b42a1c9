"""The plugin's FMANet reproduces the authors' released implementation (tests/data/official_small.pt).

Every released output of both implementations with ``gt`` is checked by
``test_fast_parity.test_released_fixture_both_implementations``; here: without ``gt``, the checkpoint converter
and the parameter count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.utils.official_ckpt import convert_official_state_dict

import pytest
import torch
from conftest import network_opt, to_btchw

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5


def _run(model, official, with_gt=True):
    model.eval()
    gt = to_btchw(official['y']) if with_gt else None
    with torch.no_grad():
        return model(to_btchw(official['x']), gt)


def test_output_without_gt_matches_released(small_model, official):
    got = _run(small_model, official, with_gt=False)
    assert 'recon' not in got and 'hr_warp' not in got
    assert (got['output'] - official['output_lr_only']).abs().max().item() <= ATOL


def test_converter_cli_round_trip(official, tmp_path):
    released = tmp_path / 'fmanet_released.pth'
    torch.save(official['state_dict'], released)
    out = tmp_path / 'converted.pth'
    network = '{' + ', '.join(f'{k}: {v}' for k, v in network_opt(official).items()) + '}'
    cmd = [sys.executable, str(ROOT / 'tools/convert_official_ckpt.py'), str(released), '-o', str(out)]
    subprocess.run(cmd + ['--network', network], check=True, capture_output=True)
    model = FMANet(**network_opt(official))
    model.load_state_dict(torch.load(out)['params'], strict=True)
    got = _run(model, official)['output']
    assert (got - official['outputs_eval']['output']).abs().max().item() <= ATOL


def test_converter_accepts_split_released_files(official, tmp_path):
    """The released trainer saves Net_D and Net_R separately; Net_D alone converts to a stage-1 model."""
    from tools.convert_official_ckpt import convert

    d_prefix, r_prefix = 'degradation_learning_network.', 'restoration_network.'
    state = official['state_dict']
    torch.save({'model_D_state_dict': {k[len(d_prefix) :]: v for k, v in state.items() if k.startswith(d_prefix)}},
               tmp_path / 'model_D_best.pt')  # fmt: skip
    torch.save({'model_R_state_dict': {k[len(r_prefix) :]: v for k, v in state.items() if k.startswith(r_prefix)}},
               tmp_path / 'model_R_best.pt')  # fmt: skip
    opt = network_opt(official)
    both = convert([str(tmp_path / 'model_D_best.pt'), str(tmp_path / 'model_R_best.pt')], **opt)
    assert set(both) == set(FMANet(**opt).state_dict())
    stage1 = convert([str(tmp_path / 'model_D_best.pt')], **opt)
    model = FMANet(stage=1, **opt)
    model.load_state_dict(stage1, strict=True)
    got = _run(model, official)
    assert 'output' not in got
    assert (got['recon'] - official['outputs_eval']['recon']).abs().max().item() <= ATOL


def test_converter_lists_bad_keys(official, tmp_path):
    from tools.convert_official_ckpt import convert

    state = dict(official['state_dict'])
    state.pop('restoration_network.r_conv.2.weight')
    state['restoration_network.f_conv1.0.weight'] = torch.zeros(1)
    torch.save(state, tmp_path / 'bad.pth')
    with pytest.raises(ValueError) as err:
        convert([str(tmp_path / 'bad.pth')], **network_opt(official))
    message = str(err.value)
    assert 'missing (1): net_r.kernel_head.2.weight' in message
    assert 'mis-shaped (1): net_r.flow_refine.0.weight' in message


def test_rgb_conversion_equals_flipped_bgr_result(official):
    """--rgb: model_rgb(x[..., ::-1 channels]) == flip(model_bgr(x)), for every image-valued output."""
    opt = network_opt(official)
    bgr, rgb = FMANet(**opt).eval(), FMANet(**opt).eval()
    bgr.load_state_dict(convert_official_state_dict(official['state_dict']))
    rgb.load_state_dict(convert_official_state_dict(official['state_dict'], to_rgb=True))
    x, y = to_btchw(official['x']), to_btchw(official['y'])
    with torch.no_grad():
        out_bgr = bgr(x, y)
        out_rgb = rgb(x.flip(2), y.flip(2))
    channel_dim = {'output': 1, 'recon': 1, 'hr_warp': 2, 'lr_warp': 2, 'anchor_d': 2, 'anchor_r': 2}
    for name, dim in channel_dim.items():
        assert (out_rgb[name] - out_bgr[name].flip(dim)).abs().max().item() <= ATOL, name
    assert (out_rgb['image_flow'] - out_bgr['image_flow']).abs().max().item() <= ATOL
    # and it is not the identity: feeding RGB to the BGR model gives something else
    with torch.no_grad():
        wrong = bgr(x.flip(2))['output'].flip(1)
    assert (wrong - out_bgr['output']).abs().max().item() > 1e-3


def test_released_default_parameter_count():
    model = FMANet()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.net_d) == 3_225_837
    assert count(model.net_r) == 6_540_666
    assert count(model) == 9_766_503
    assert count(FMANet(stage=1)) == 3_225_837
