"""One clear line for bad input (issue 11, items 5 and 6): every tool's entry point, option checks, checkpoint
mismatch summaries, dataset checks when a dataset is built, and the data tools' rerun safety."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.utils.errors import error_line, run_cli

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_NET

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools import (  # noqa: E402
    benchmark,
    benchmark_speed,
    convert_official_ckpt,
    create_lmdb,
    generate_flow,
    inference,
    make_demo_data,
    visualize,
)
from tools import test as test_tool  # noqa: E402

LR = 'train_blur_bicubic/X4'


def run_tool(main, argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``run_cli(main, argv)``; the error line must be the last line of stderr."""
    capsys.readouterr()
    status = run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return status, (err.strip().splitlines() or [''])[-1]


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    """2 demo clips x 5 frames (HR 64x64, LR 16x16): '000' train, '001' val."""
    root = tmp_path_factory.mktemp('errors') / 'demo'
    argv = [
        '--out',
        str(root),
        '--num-clips',
        '2',
        '--val-clips',
        '1',
        '--num-frames',
        '5',
        '--height',
        '64',
        '--width',
        '64',
    ]
    assert run_cli(make_demo_data.main, argv) == 0
    return root


def write_test_opt(demo: Path, tmp_path: Path, lq_root: Path | None = None, **dataset) -> Path:
    opt = {
        'name': 'errors',
        'scale': 4,
        'num_gpu': 0,
        'datasets': {
            'test_1': {
                'name': 'demo',
                'type': 'VSRDBTestDataset',
                'dataroot_lq': str(lq_root or demo / LR),
                'dataroot_gt': str(demo / 'train_sharp'),
                'clips': ['001'],
                'num_frame': 3,
                'io_backend': {'type': 'disk'},
                **dataset,
            }
        },
        'network_g': {'type': 'FMANet', **TINY_NET},
        'path': {'results_root': str(tmp_path / 'results')},
    }
    path = tmp_path / 'test.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def save_params(net: torch.nn.Module, path: Path) -> Path:
    torch.save({'params': net.state_dict()}, path)
    return path


# ----------------------------------------------------------------- run_cli itself


def test_run_cli_prints_one_line_and_exits_1(capsys, monkeypatch):
    def fails(error):
        def main(argv):
            raise error

        return main

    monkeypatch.delenv('FMANET_DEBUG', raising=False)
    assert run_tool(fails(ValueError("opt.yml: option 'x' must be 1")), [], capsys) == (
        1,
        "error: opt.yml: option 'x' must be 1",
    )
    assert run_tool(fails(KeyError("missing key 'a/b' in LMDB 'x.lmdb'")), [], capsys) == (
        1,
        "error: missing key 'a/b' in LMDB 'x.lmdb'",
    )
    assert run_tool(fails(SystemExit('--cases: expected a subset')), [], capsys) == (
        1,
        'error: --cases: expected a subset',
    )
    # --debug (removed before main sees it) and FMANET_DEBUG show the traceback
    with pytest.raises(ValueError):
        run_cli(fails(ValueError('x')), ['--debug'])
    monkeypatch.setenv('FMANET_DEBUG', '1')
    with pytest.raises(ValueError):
        run_cli(fails(ValueError('x')), [])
    monkeypatch.delenv('FMANET_DEBUG')
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_cli(fails(ZeroDivisionError('bug')), [])


class _FailingDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise ValueError("VSRDBDataset: file 'x/000/00000001.png' could not be decoded as an image")


def test_a_data_loader_worker_error_is_unwrapped(capsys):
    def main(argv):
        next(iter(torch.utils.data.DataLoader(_FailingDataset(), num_workers=1)))

    status, line = run_tool(main, [], capsys)
    assert (status, line) == (1, "error: VSRDBDataset: file 'x/000/00000001.png' could not be decoded as an image")
    wrapped = KeyError(
        'Caught KeyError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n'
        '  File "x.py", line 1, in f\n    raise KeyError(\'a b\')\nKeyError: "missing \'c/d\'"\n'
    )
    assert error_line(wrapped) == "missing 'c/d'"


# ----------------------------------------------------------------- every tool: missing input, wrong option value


def test_every_tool_reports_bad_arguments_in_one_line(demo, tmp_path, capsys):
    missing = tmp_path / 'nowhere'
    ckpt = save_params(FMANet(**TINY_NET), tmp_path / 'tiny.pth')
    cases = [
        (test_tool.main, ['-opt', missing], f'error: options file not found: {missing}'),
        (
            test_tool.main,
            ['-opt', write_test_opt(demo, tmp_path), '--tile', 'abc'],
            "argument --tile: invalid int value: 'abc'",
        ),
        (inference.main, ['-i', missing, '-o', tmp_path / 'out', '--ckpt', ckpt], str(missing)),
        (
            inference.main,
            ['-i', demo / LR / '001', '-o', tmp_path / 'o', '--ckpt', ckpt, '--model-color', 'x'],
            "argument --model-color: invalid choice: 'x'",
        ),
        (convert_official_ckpt.main, [missing, '-o', tmp_path / 'c.pth'], f'released checkpoint not found: {missing}'),
        (
            convert_official_ckpt.main,
            [ckpt, '-o', tmp_path / 'c.pth', '--stage', '3'],
            'argument --stage: invalid choice',
        ),
        (create_lmdb.main, ['--input', missing], f"error: input folder '{missing}' not found"),
        (create_lmdb.main, ['--input', demo / LR, '--kind', 'video'], "argument --kind: invalid choice: 'video'"),
        (generate_flow.main, ['--input', missing, '--output', tmp_path / 'f', '--weights', ckpt], str(missing)),
        (generate_flow.main, ['--input', demo / LR, '--output', tmp_path / 'f', '--weights', missing], str(missing)),
        (benchmark.main, ['--models', 'FMANet,nonet'], "error: unknown model 'nonet'"),
        (benchmark.main, ['--size', '12'], 'argument --size: size must look like HxW'),
        (
            benchmark.main,
            ['--lq-root', missing, '--gt-root', missing],
            f"error: --lq-root: folder '{missing}' not found",
        ),
        (benchmark.main, ['--lq-root', demo / LR], 'error: --lq-root and --gt-root go together'),
        (benchmark_speed.main, ['--cases', 'inference,fly'], 'error: --cases: expected a comma-separated subset'),
        (
            visualize.main,
            ['-i', demo / LR / '001', '--ckpt', missing, '-o', tmp_path / 'v'],
            f'checkpoint not found: {missing}',
        ),
        (
            visualize.main,
            ['-i', demo / LR / '001', '--ckpt', ckpt, '-o', tmp_path / 'v', '--roi', '1,2'],
            '--roi must be 4 comma-separated integers',
        ),
        (
            make_demo_data.main,
            ['--out', tmp_path / 'd', '--num-clips', '0'],
            'error: --num-clips must be at least 1, got 0',
        ),
    ]
    for main, argv, expected in cases:
        status, line = run_tool(main, argv, capsys)
        assert status == 1 and line.startswith('error: ') and expected in line, (main.__module__, argv, line)


# ----------------------------------------------------------------- tools/test.py on bad data and checkpoints


def test_test_tool_names_the_checkpoint_and_data_problems(demo, tmp_path, capsys):
    stage2 = save_params(FMANet(**TINY_NET), tmp_path / 'stage2.pth')
    opt = write_test_opt(demo, tmp_path)

    not_ckpt = tmp_path / 'notes.pth'
    not_ckpt.write_text('e' * 200)
    status, line = run_tool(test_tool.main, ['-opt', opt, '--ckpt', not_ckpt], capsys)
    assert status == 1 and line.startswith(f'error: {not_ckpt}: not a PyTorch checkpoint, or a damaged one (')

    stage1 = save_params(FMANet(stage=1, **TINY_NET), tmp_path / 'stage1.pth')
    status, line = run_tool(test_tool.main, ['-opt', opt, '--ckpt', stage1], capsys)
    assert line.startswith(f'error: {stage1} [params] does not match the FMANet configuration: ')
    assert 'missing key(s) (net_r.' in line and line.endswith(
        'likely a stage-1 checkpoint for a stage-2 model (give it as path.pretrain_network_d instead)'
    )

    wider = save_params(FMANet(**{**TINY_NET, 'dim': 12}), tmp_path / 'dim12.pth')
    status, line = run_tool(test_tool.main, ['-opt', opt, '--ckpt', wider], capsys)
    assert 'tensor(s) differ in size (' in line and line.endswith(
        'likely a different network size, e.g. a different `dim` (most differ in channels: 12 in the checkpoint, '
        '6 in the model)'
    )

    typo = write_test_opt(demo, tmp_path, clip=['001'])
    status, line = run_tool(test_tool.main, ['-opt', typo, '--ckpt', stage2], capsys)
    assert line == f"error: {typo}: datasets.test_1 (VSRDBTestDataset): unknown option 'clip' (did you mean clips?)"

    # a gap in the frame numbering: the window would silently jump over it
    lq = tmp_path / 'lq'
    shutil.copytree(demo / LR, lq)
    (lq / '001' / '00000002.png').unlink()
    status, line = run_tool(test_tool.main, ['-opt', write_test_opt(demo, tmp_path, lq), '--ckpt', stage2], capsys)
    assert line == (
        f"error: test set demo: clip '001' under '{lq}' has a gap in its frame numbering: frame 00000002 is "
        'missing between 00000000 and 00000004'
    )

    # an LR frame of another size in the clip (was a torch.stack error)
    shutil.copy(demo / LR / '001' / '00000002.png', lq / '001' / '00000002.png')
    cv2.imwrite(str(lq / '001' / '00000003.png'), np.zeros((8, 8, 3), np.uint8))
    status, line = run_tool(test_tool.main, ['-opt', write_test_opt(demo, tmp_path, lq), '--ckpt', stage2], capsys)
    assert status == 1 and line == (
        'error: test set demo: LR frame 001/00000003 has size (8, 8), expected (16, 16) like 001/00000000 '
        '(all frames of a clip must have one size)'
    )


# ----------------------------------------------------------------- datasets: clip names, missing data


def test_clip_names_stay_strings(demo):
    from fmanet_plugin.data.vsrdb_test_dataset import VSRDBTestDataset
    from fmanet_plugin.mm.config_check import parse_cfg_value

    # the shell turns --cfg-options clips=['001'] into clips=[001]; quoted or not, the name stays '001'
    assert parse_cfg_value('[001]') == ['001'] and parse_cfg_value("['001','002']") == ['001', '002']
    assert (
        parse_cfg_value('0') == 0 and parse_cfg_value('1e-3') == 1e-3 and parse_cfg_value('[0.9,0.999]') == [0.9, 0.999]
    )
    opt = {'dataroot_lq': str(demo / LR), 'io_backend': {'type': 'disk'}}
    assert list(VSRDBTestDataset({**opt, 'clips': parse_cfg_value('[001]')}).clips) == ['001']
    with pytest.raises(ValueError) as error:
        VSRDBTestDataset({**opt, 'clips': [1]})  # YAML clips: [001] reads 1
    assert str(error.value).startswith(
        "VSRDBTestDataset: option 'clips': 1 was read as a number, not a clip name; write clip names as quoted "
        "strings (e.g. '001')"
    )


def test_missing_streams_and_clips_are_listed_when_built(demo, tmp_path):
    from fmanet_plugin.data.vsrdb_dataset import VSRDBDataset
    from fmanet_plugin.mm.dataset import VSRDBDataset as MMVSRDBDataset

    meta = tmp_path / 'meta.txt'
    meta.write_text('000 5 (16,16,3)\n009 5 (16,16,3)\n')
    opt = {
        'dataroot_lq': str(demo / LR),
        'dataroot_gt': str(demo / 'train_sharp'),
        'dataroot_lq_sharp': str(tmp_path / 'absent'),
        'dataroot_flow': str(demo / 'train_flow'),
        'meta_info_file': str(meta),
        'io_backend': {'type': 'disk'},
    }
    with pytest.raises(FileNotFoundError) as error:
        VSRDBDataset(opt)
    assert (
        str(error.value) == f"VSRDBDataset: missing data: dataroot_lq_sharp '{tmp_path / 'absent'}': folder not found"
    )
    with pytest.raises(FileNotFoundError) as error:
        VSRDBDataset({**opt, 'dataroot_lq_sharp': str(demo / 'train_sharp_bicubic/X4')})
    message = str(error.value)
    for stream in ('lq', 'gt', 'lq_sharp', 'flow'):
        assert f"dataroot_{stream} '" in message and '1 clip(s) missing (009)' in message
    prefix = {'lq': LR, 'gt': 'train_sharp', 'lq_sharp': 'absent', 'flow': 'train_flow'}
    with pytest.raises(FileNotFoundError, match=r"^VSRDBDataset: missing data: dataroot_lq_sharp '.*absent': folder"):
        MMVSRDBDataset(data_prefix=prefix, data_root=str(demo), ann_file='meta_info_train.txt', lazy_init=False)


# ----------------------------------------------------------------- options: numbers as text, unknown keys


def test_options_numbers_and_unknown_keys():
    from fmanet_plugin.utils.errors import UserInputError
    from fmanet_plugin.utils.options import coerce_numbers, prepare_options

    opt = yaml.safe_load((ROOT / 'options/demo_stage2.yml').read_text())
    opt['train']['optim_d']['lr'] = '1e10'  # what --force_yml train:optim_d:lr=1e10 and YAML 1.1 give
    opt['datasets']['val']['clips'] = ['1e3']
    prepare_options(opt, 'x.yml')
    assert opt['train']['optim_d']['lr'] == 1e10 and opt['datasets']['val']['clips'] == ['1e3']
    assert coerce_numbers({'a': ['2E-4', '000', 'x1e3'], 'name': '1e5'}) == {'a': [2e-4, '000', 'x1e3'], 'name': '1e5'}
    for section, key, expected in [
        (
            ('datasets', 'train'),
            'gt_sise',
            "datasets.train (VSRDBDataset): unknown option 'gt_sise' (did you mean gt_size?)",
        ),
        (('network_g',), 'num_frma_', "network_g (FMANet): unknown option 'num_frma_' (did you mean num_frma?)"),
        (
            ('train',),
            'max_update_ration',
            "train (FMANetModel): unknown option 'max_update_ration' (did you mean max_update_ratio?)",
        ),
        (
            ('train',),
            'determinstic',
            "train (FMANetModel): unknown option 'determinstic' (did you mean deterministic?)",
        ),
        (('train', 'optim_d'), 'betaz', "train.optim_d (Adam): unknown option 'betaz' (did you mean betas?)"),
        (
            ('train', 'flow_opt'),
            'loss_wieght',
            "train.flow_opt (MSELoss): unknown option 'loss_wieght' (did you mean loss_weight?)",
        ),
        (('logger',), 'keep_checkpoint', "logger: unknown option 'keep_checkpoint' (did you mean keep_checkpoints?)"),
    ]:
        opt = yaml.safe_load((ROOT / 'options/demo_stage2.yml').read_text())
        node = opt
        for part in section:
            node = node[part]
        node[key] = 1
        with pytest.raises(UserInputError) as error:
            prepare_options(opt, 'x.yml')
        assert str(error.value) == f'x.yml: {expected}'


# ----------------------------------------------------------------- data tools: stale partials, damaged flows, umask


def test_create_lmdb_removes_stale_partials_and_uses_the_umask(demo, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = tmp_path / f'.lq.lmdb.{dead.pid}.abc.partial'
    stale.mkdir()
    (stale / 'data.mdb').write_bytes(b'half')
    live = tmp_path / f'.lq.lmdb.{os.getpid()}.abc.partial'  # a build under way in a live process: kept
    live.mkdir()
    old_umask = os.umask(0o022)
    try:
        assert run_tool(create_lmdb.main, ['--input', demo / LR, '--output', tmp_path / 'lq.lmdb'], capsys)[0] == 0
    finally:
        os.umask(old_umask)
    assert not stale.exists() and live.exists()
    assert (tmp_path / 'lq.lmdb').stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0o700


def test_damaged_flow_files_are_computed_again(tmp_path):
    from fmanet_plugin.utils.raft_flow import _pairs_to_compute, valid_flow_file

    frames = tmp_path / 'frames' / 'c'
    frames.mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(frames / f'{k:08d}.png'), np.zeros((6, 8, 3), np.uint8))
    flows = tmp_path / 'flow' / 'c'
    flows.mkdir(parents=True)
    good = np.zeros((6, 8, 2), np.float32)
    np.save(flows / '00000001_00000000.npy', good)
    np.save(flows / '00000001_00000002.npy', np.full((6, 8, 2), np.nan, np.float32))
    np.save(flows / '00000000_00000001.npy', np.zeros((8, 6, 2), np.float32))
    np.save(flows / '00000002_00000001.npy', good)
    (flows / '00000002_00000001.npy').write_bytes((flows / '00000002_00000001.npy').read_bytes()[:100])  # truncated
    assert valid_flow_file(flows / '00000001_00000000.npy', (6, 8))
    pairs = [
        ('c', '00000000', '00000001'),
        ('c', '00000001', '00000000'),
        ('c', '00000001', '00000002'),
        ('c', '00000002', '00000001'),
    ]
    todo = _pairs_to_compute(pairs, tmp_path / 'flow', tmp_path / 'frames', 'png')
    assert todo == [pairs[0], pairs[2], pairs[3]]


# ----------------------------------------------------------------- train (YAML and mm): one subprocess for all


TRAIN_CASES = r"""
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
import fmanet_plugin
from fmanet_plugin.utils.errors import run_cli
from tools.train import main
results = []
for argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = run_cli(main, argv, keep_debug_flag=True)
    results.append([status, err.getvalue()])
print('RESULTS' + json.dumps(results))
"""


def test_train_errors_yaml_and_mm(demo, tmp_path):
    from test_mm import tiny_options

    opt = yaml.safe_load((ROOT / 'options/demo_stage1.yml').read_text())
    opt['network_g'].update(TINY_NET, stage=1)
    for phase in opt['datasets'].values():
        for key in [k for k in phase if k.startswith('dataroot_') or k == 'meta_info_file']:
            phase[key] = str(demo / Path(phase[key]).relative_to('datasets/demo')) if phase[key] else None
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=1, num_worker_per_gpu=1)
    opt['train']['total_iter'] = 2
    good = tmp_path / 'good.yml'
    good.write_text(yaml.safe_dump(opt))
    opt['datasets']['train']['gt_sise'] = 64
    typo = tmp_path / 'typo.yml'
    typo.write_text(yaml.safe_dump(opt))
    truncated = tmp_path / 'truncated'
    shutil.copytree(demo, truncated)
    png = truncated / 'train_sharp' / '000' / '00000002.png'
    png.write_bytes(png.read_bytes()[:200])
    mm = [str(ROOT / 'options/mm/demo_stage1.py'), '--work-dir', str(tmp_path / 'mm')]
    cases = [
        ['-opt', str(tmp_path / 'nowhere.yml')],
        ['-opt', str(typo)],
        ['-opt', str(good), '--force_yml', 'train:optim_d:lr=1e10', 'name=lr1e10'],
        [*mm, *tiny_options(demo, 'typo', 1, 2), 'train_dataloader.dataset.clipz=[000]'],
        [*mm, *tiny_options(tmp_path / 'no_data', 'nodata', 1, 2)],
        [*mm, *tiny_options(truncated, 'png', 1, 2), 'train_dataloader.num_workers=1'],
        [*mm, *tiny_options(demo, 'clips', 1, 2), 'train_dataloader.dataset.clips=[000]', 'train_cfg.max_iters=1'],
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, '-c', TRAIN_CASES, str(ROOT), json.dumps(cases)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert 'RESULTS' in proc.stdout, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split('RESULTS', 1)[1])
    lines = [(status, (err.strip().splitlines() or [''])[-1]) for status, err in results]
    assert all('Traceback' not in err for _, err in results)
    assert lines[0] == (1, f'error: -opt: options file not found: {tmp_path / "nowhere.yml"}')
    assert lines[1] == (
        1,
        f"error: {typo}: datasets.train (VSRDBDataset): unknown option 'gt_sise' (did you mean gt_size?)",
    )
    # 1e10 is a number: training runs and the divergence guard stops the step (was a float-vs-str TypeError)
    assert lines[2][0] == 1 and lines[2][1].startswith('error: iteration 1: the update of net_d is ')
    assert lines[3] == (
        1,
        "error: train_dataloader.dataset (fmanet_plugin.VSRDBDataset): unknown option 'clipz' (did you mean clips?)",
    )
    assert lines[4][0] == 1 and lines[4][1].startswith(
        f"error: VSRDBDataset: missing data: dataroot_lq '{tmp_path / 'no_data' / LR}': folder not found; "
    )
    assert lines[5][0] == 1 and lines[5][1] == (
        f"error: LoadVSRDBFrames: file '{png}' could not be decoded as an image"
    )
    assert lines[6][0] == 0, results[6][1][-2000:]


def test_a_flow_file_that_is_not_npy_is_named(tmp_path):
    from fmanet_plugin.data.vsrdb_reader import VSRDBReader

    path = tmp_path / 'flow' / '000' / '00000001_00000002.npy'
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path.with_suffix('.png')), np.zeros((4, 4, 3), np.uint8))
    path.with_suffix('.png').rename(path)  # a PNG under a .npy name
    reader = VSRDBReader({'flow': str(tmp_path / 'flow')}, {'type': 'disk'}, 'png', 'VSRDBDataset')
    with pytest.raises(ValueError) as error:
        reader.flow('000', '00000001', '00000002', (4, 4))
    assert str(error.value) == (
        f"VSRDBDataset: file '{path}' is not a .npy file (no NumPy header; expected float32 (h, w, 2))"
    )
