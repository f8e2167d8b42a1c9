"""tools/make_iconvsr_edvr.py: a trained EDVR -> the file basicsr's IconVSR loads as its keyframe extractor."""

from __future__ import annotations

from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.archs.small_frame_vsr_arch import SmallFrameIconVSR
from fmanet_plugin.utils.errors import run_cli

import pytest
import torch
import yaml
from basicsr.archs.basicvsr_arch import IconVSR
from basicsr.archs.edvr_arch import EDVR

from tools import make_iconvsr_edvr

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / 'options/baselines'
# the network basicsr's EDVRFeatureExtractor is for IconVSR(num_feat=8, temporal_padding=1), reconstruction tiny
TINY_EDVR = dict(num_feat=8, num_frame=3, deformable_groups=8, num_extract_block=5, num_reconstruct_block=1)


def random_edvr(**network) -> EDVR:
    """An EDVR with every tensor random (its offset convolutions start at zero), as a trained one would be."""
    torch.manual_seed(0)
    edvr = EDVR(**network)
    with torch.no_grad():
        for tensor in edvr.state_dict().values():
            tensor.copy_(torch.randn_like(tensor) * 0.1)
    return edvr


def save_edvr(path: Path, **network) -> EDVR:
    edvr = random_edvr(**network)
    torch.save({'params': edvr.state_dict()}, path)
    return edvr


def convert(argv: list[str]) -> int:
    return run_cli(make_iconvsr_edvr.main, [str(a) for a in argv])


def test_output_loads_strictly_into_basicsr_iconvsr(tmp_path):
    edvr = save_edvr(tmp_path / 'edvr.pth', **TINY_EDVR)
    out = tmp_path / 'extractor.pth'
    assert convert([tmp_path / 'edvr.pth', '--num-feat', 8, '--temporal-padding', 1, '--out', out]) == 0

    params = torch.load(out, weights_only=True)['params']
    reconstruction = ('reconstruction.', 'upconv1.', 'upconv2.', 'conv_hr.', 'conv_last.')
    assert params and not any(k.startswith(reconstruction) for k in params)
    iconvsr = IconVSR(num_feat=8, num_block=1, temporal_padding=1, edvr_path=str(out))  # basicsr: strict load
    assert set(params) == set(iconvsr.edvr.state_dict())
    edvr_state = edvr.state_dict()
    for key, value in iconvsr.edvr.state_dict().items():
        assert torch.equal(value, edvr_state[key]), key

    # the extractor computes EDVR's fused features (same centre frame): EDVR's TSA output, captured by a hook
    fused = {}
    edvr.fusion.register_forward_hook(lambda module, args, output: fused.setdefault('edvr', output))
    lq = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        edvr(lq)
        torch.testing.assert_close(iconvsr.edvr(lq), fused['edvr'], rtol=0, atol=0)


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        (dict(num_extract_block=2), 'num_extract_block 2 (expected 5)'),
        (dict(num_feat=16), 'num_feat 16 (expected 8)'),
        (dict(num_frame=5), 'num_frame 5 (expected 3)'),
        (dict(deformable_groups=4), 'deformable_groups 4 (expected 8)'),
        (dict(with_tsa=False), 'with_tsa False (expected True)'),
        (dict(with_predeblur=True), 'with_predeblur True (expected False)'),
    ],
)
def test_mismatched_edvr_is_one_line_naming_the_sizes(tmp_path, capsys, change, message):
    save_edvr(tmp_path / 'edvr.pth', **dict(TINY_EDVR, **change))
    out = tmp_path / 'extractor.pth'
    assert convert([tmp_path / 'edvr.pth', '--num-feat', 8, '--temporal-padding', 1, '--out', out]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'edvr.pth [params]' in err[0]
    assert message in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / 'edvr.pth']  # nothing written


def test_not_an_edvr_checkpoint(tmp_path, capsys):
    torch.save({'params': IconVSR(num_feat=8, num_block=1, temporal_padding=1).state_dict()}, tmp_path / 'x.pth')
    assert convert([tmp_path / 'x.pth', '--num-feat', 8, '--out', tmp_path / 'out.pth']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not an EDVR checkpoint' in err[0]


def network(option_file: str) -> dict:
    return dict(yaml.safe_load((BASELINES / option_file).read_text())['network_g'])


@pytest.mark.parametrize(
    ('edvr_opt', 'iconvsr_opt'), [('edvr_m.yml', 'iconvsr.yml'), ('demo_edvr_for_iconvsr.yml', 'demo_iconvsr.yml')]
)
def test_baseline_edvr_options_fit_the_iconvsr_options(tmp_path, edvr_opt, iconvsr_opt):
    edvr_net = {k: v for k, v in network(edvr_opt).items() if k != 'type'}
    save_edvr(tmp_path / 'edvr.pth', **edvr_net)
    out = tmp_path / 'extractor.pth'
    argv = [tmp_path / 'edvr.pth', '--iconvsr-opt', BASELINES / iconvsr_opt, '--edvr-opt', BASELINES / edvr_opt]
    assert convert([*argv, '--out', out]) == 0
    iconvsr_net = {k: v for k, v in network(iconvsr_opt).items() if k not in ('type', 'spynet_path')}
    iconvsr = SmallFrameIconVSR(**dict(iconvsr_net, edvr_path=str(out)))
    expected = torch.load(out, weights_only=True)['params']
    assert all(torch.equal(v, expected[k]) for k, v in iconvsr.edvr.state_dict().items())


def test_demo_edvr_option_file_is_refused_for_iconvsr(tmp_path, capsys):
    save_edvr(tmp_path / 'edvr.pth', **dict(TINY_EDVR, num_feat=16, num_frame=5))
    argv = [tmp_path / 'edvr.pth', '--iconvsr-opt', BASELINES / 'demo_iconvsr.yml']
    assert convert([*argv, '--edvr-opt', BASELINES / 'demo_edvr.yml', '--out', tmp_path / 'out.pth']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'demo_edvr.yml' in err[0] and 'num_extract_block 2 (expected 5)' in err[0]


def test_small_frame_iconvsr_reports_a_bad_edvr_path_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match='make_iconvsr_edvr'):
        SmallFrameIconVSR(num_feat=8, num_block=1, temporal_padding=1, edvr_path=str(tmp_path / 'missing.pth'))
    save_edvr(tmp_path / 'edvr.pth', **TINY_EDVR)  # the whole EDVR, not the extractor: unexpected keys
    with pytest.raises(ValueError, match='unexpected key') as info:
        SmallFrameIconVSR(num_feat=8, num_block=1, temporal_padding=1, edvr_path=str(tmp_path / 'edvr.pth'))
    assert '\n' not in str(info.value)


def test_benchmark_states_how_the_iconvsr_extractor_started():
    from fmanet_plugin.utils.run_info import keyframe_extractor_note, training_budget

    opt = yaml.safe_load((BASELINES / 'demo_iconvsr.yml').read_text())
    path = opt['network_g']['edvr_path']
    assert keyframe_extractor_note(opt['network_g']) == f'EDVR extractor pretrained ({path})'
    assert training_budget(opt)['iterations'] == '800 + EDVR extractor'
    opt['network_g']['edvr_path'] = None
    assert keyframe_extractor_note(opt['network_g']) == 'EDVR extractor random init'
    assert training_budget(opt)['iterations'] == 800
    assert keyframe_extractor_note(network('demo_basicvsr.yml')) is None
