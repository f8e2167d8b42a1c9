"""Every shell command of README.md is classified, parses as written, and runs when it needs no download.

``COMMANDS`` is the one table: each README command (see ``helpers/readme_commands.py`` for what counts) is

- ``Run``: executed as written in a temporary copy of the repository (``tools/``, ``options/``, the RAFT
  weights) with a documented size substitution, on tiny generated inputs; it must exit 0 and write its output;
- ``Parse``: needs downloaded data (REDS, the released checkpoint), a GPU, or minutes to hours of CPU; the
  tool's own parser must accept the arguments as written (the tool runs up to its ``parse_args``), every
  repository file it names must exist and load (option files through ``prepare_options``, mm configs through
  mmengine's loader and the plugin's config check, with the command's ``--cfg-options``), and a path into
  ``experiments/<run>/`` or ``work_dirs/<config>/`` must name a run (an option file's ``name``) or an mm config;
- ``Skip``: not a tool command (installation, ``make`` targets, which the tests must not run; the targets are
  checked to exist), with the reason.

A README command missing from the table, or a table entry no longer in the README, fails the test.

Size substitution of the ``Run`` commands, all of it:

- in the copy, ``options/own_footage_stage{1,2}.yml`` and ``options/test_own_footage.yml`` get ``TINY_NET`` as
  network (same stage) and 32x32 GT patches, batch 1, no dataset enlargement (the commands' ``--force_yml``
  iteration counts are kept);
- the arguments in ``Run.extra`` are appended to the command (listed per command);
- files a command expects from the user or from an earlier, long step are generated tiny beforehand
  (:func:`prepare_inputs`): ``datasets/demo`` (2 clips of 5 frames, LR 16x16), ``blurry.mp4``, ``phone.mov``,
  ``clip/`` and ``datasets/my_clips/lq`` (2 frames, LR 8x8; ``phone.mov``: 7 frames 3 s apart, 3 of them
  restored), ``my.pth`` (the released configuration with seeded random
  weights: the commands that use it build ``FMANet()``'s defaults) and the demo BasicVSR run's checkpoint
  (seeded random weights).

The ``Run`` commands go through ``helpers/readme_runner.py``: one process per lane (interpreter start-up paid
once), the two lanes side by side, commands of a lane in README order.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.mm.config_check import check_plugin_config
from fmanet_plugin.utils.errors import run_cli
from fmanet_plugin.utils.options import prepare_options
from fmanet_plugin.utils.runtime import build_network_from_opt
from fmanet_plugin.utils.video_io import write_video_with_tone

import av
import basicsr.utils.options
import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_NET, load_tool
from helpers.readme_commands import (
    Command,
    extract_commands,
    parse_tool_arguments,
    repo_paths,
    split_command,
    strip_comment,
)
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
RUNNER = Path(__file__).parent / 'helpers' / 'readme_runner.py'


@dataclass(frozen=True)
class Run:
    """Executed. ``lane``: the commands of one lane run in README order in one process; the lanes run side by side."""

    lane: str
    outputs: tuple[str, ...]  # files, relative to the copy, that the command must (re)write
    extra: tuple[str, ...] = ()  # appended arguments (the size substitution)


@dataclass(frozen=True)
class Parse:
    reason: str


@dataclass(frozen=True)
class Skip:
    reason: str


REDS = 'needs REDS (downloaded)'
RELEASED = 'needs the released checkpoint (downloaded from the authors)'
REDS_TRAINING = 'REDS training at the released size (GPU days)'
SPEED = 'benchmark of the released network in measuring subprocesses: minutes of CPU'
# the demo's tiny mm overrides: TINY_NET as generator, 32x32 patches, batch 1, 2 iterations, checkpoint at 2
MM_TINY = (
    '--cfg-options',
    *[f'model.generator.{key}={value}' for key, value in TINY_NET.items()],
    'train_dataloader.batch_size=1',
    'train_dataloader.dataset.pipeline.1.gt_patch_size=32',
    'train_cfg.max_iters=2',
    'default_hooks.checkpoint.interval=2',
    'default_hooks.logger.interval=1',
)
MM_TINY_STAGE2 = (*MM_TINY, 'train_cfg.val_interval=2', 'model.net_d_checkpoint=work_dirs/demo_stage1/iter_2.pth')

COMMANDS: dict[str, Run | Parse | Skip] = {
    # ----- quick start, installation
    'make demo': Skip('make is not run by the tests (it may rebuild .venv); its command python tools/demo.py is'),
    'make test': Skip('the test suite itself'),
    'make venv': Skip('builds .venv (installation)'),
    'make format': Skip('rewrites the sources (ruff)'),
    'make benchmark': Skip('make is not run by the tests; its command is python tools/benchmark_baselines.py'),
    'python3 -m venv .venv': Skip('installation'),
    '.venv/bin/pip install torch==2.14.1 torchvision==0.29.1': Skip('installation (downloads)'),
    '.venv/bin/pip install --no-build-isolation basicsr==1.4.2': Skip('installation (downloads)'),
    '.venv/bin/pip install mmengine==0.10.7 mmcv-lite==2.2.0 lmdb opencv-python addict tqdm matplotlib pytest ruff': (
        Skip('installation (downloads)')
    ),
    '.venv/bin/pip install av==18.1.0 scenedetect==0.7.2': Skip('installation (downloads)'),
    '.venv/bin/pip install --no-build-isolation -e .': Skip('installation'),
    'python tools/demo.py': Parse('the whole demo: 5-30 min of CPU (its pieces: tests/test_demo.py)'),
    # ----- speed and memory
    'python tools/benchmark_speed.py': Parse(SPEED),
    'python tools/benchmark_speed.py --cases inference --allocators default --repeats 3 --json speed.json': Parse(
        SPEED
    ),
    'python tools/benchmark_speed.py --device cuda --amp bf16 --accuracy --warmup 1': Parse('needs a GPU'),
    'python tools/benchmark_speed.py --cases inference --size 90x160 --background-load 2': Parse(SPEED),
    'python tools/benchmark_speed.py --cases inference --size 720x1280 --allocators default --impls fast --tile 256 '
    '--tile-overlap 32': Parse('a 720p forward of the released network: about 25 min of CPU'),
    'python tools/benchmark_speed.py --cases inference': Parse(SPEED),
    'python tools/benchmark_speed.py --cases inference --size 90x160 --allocators default --phases --phase-ops 8': (
        Parse(SPEED)
    ),
    'python tools/benchmark_speed.py --cases train --repeats 2': Parse(SPEED),
    'python tools/benchmark_speed.py --cases inference --size 90x160 --allocators default --background-load B': Skip(
        'a template (B = number of loops); the fenced command with --background-load 2 is checked'
    ),
    'python tools/benchmark_speed.py --cases inference --size 720x1280 --allocators default --impls fast': Parse(
        'a 720p forward of the released network: about 25 min of CPU'
    ),
    # ----- released checkpoint, REDS preparation
    'python tools/convert_official_ckpt.py model_D_best.pt model_R_best.pt -o '
    'experiments/pretrained_models/FMANet_REDS.pth --rgb': Parse(RELEASED),
    'python tools/convert_official_ckpt.py model_D_best.pt -o FMANet_REDS_stage1.pth --stage 1': Parse(RELEASED),
    'python tools/generate_flow.py --input datasets/REDS/train_sharp_bicubic/X4 --output datasets/REDS/train_flow '
    '--weights tests/data/raft-small.pth --device cuda --batch-size 16': Parse(REDS + ', and a GPU'),
    'python tools/create_lmdb.py --root datasets/REDS': Parse(REDS),
    # ----- own footage, start to finish (lane A, in this order)
    'python tools/make_demo_video.py --out datasets/footage/demo_120fps.mp4': Run(
        'A', ('datasets/footage/demo_120fps.mp4',), ('--seconds', '0.4', '--height', '64', '--width', '96')
    ),
    'python tools/prepare_vsrdb.py -i datasets/footage/demo_120fps.mp4 -o datasets/own_footage --blur-frames 5 '
    '--clip-length 24 --min-clip-length 8 --val-clips 1 --lmdb': Run(
        'A',
        (
            'datasets/own_footage/meta_info_train.txt',
            'datasets/own_footage/meta_info_val.txt',
            'datasets/own_footage/train_flow.lmdb/data.mdb',
        ),  # fmt: skip
        ('--flow-updates', '1'),
    ),
    'python tools/train.py -opt options/own_footage_stage1.yml --force_yml train:total_iter=20': Run(
        'A', ('experiments/own_footage_FMANet_stage1/models/net_g_latest.pth',)
    ),
    'python tools/train.py -opt options/own_footage_stage2.yml --force_yml train:total_iter=10 val:val_freq=10': Run(
        'A', ('experiments/own_footage_FMANet_stage2/models/net_g_latest.pth',)
    ),
    'python tools/test.py -opt options/test_own_footage.yml': Run(
        'A', ('results/own_footage_FMANet_test/own_footage_val_metrics.csv',)
    ),
    'python tools/inference.py -i blurry.mp4 -o restored.mp4 -opt options/own_footage_stage2.yml --ckpt '
    'experiments/own_footage_FMANet_stage2/models/net_g_latest.pth': Run('A', ('restored.mp4',)),
    'python tools/benchmark_video_memory.py --short 10 --long 300 --lr-size 64x96': Parse(
        'a 300-frame video restored in measuring subprocesses: minutes'
    ),
    # ----- training (BasicSR)
    'python tools/train.py -opt options/fmanet_stage1.yml': Parse(REDS_TRAINING),
    'python tools/train.py -opt options/fmanet_stage2.yml': Parse(REDS_TRAINING),
    'torchrun --nproc_per_node=8 tools/train.py -opt options/fmanet_stage2.yml --launcher pytorch': Parse(
        REDS_TRAINING + ', 8 GPUs'
    ),
    'torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=$MASTER_HOST:29500 --rdzv-id=fmanet '
    'tools/train.py -opt options/fmanet_stage2.yml --launcher pytorch': Parse(REDS_TRAINING + ', 2 nodes'),
    'srun -p $PARTITION --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 --kill-on-bad-exit=1 python -u tools/train.py '
    '-opt options/fmanet_stage2.yml --launcher slurm': Parse(REDS_TRAINING + ', a slurm cluster'),
    'python tools/train.py -opt options/fmanet_stage2.yml --auto_resume': Parse(REDS_TRAINING),
    'torchrun --nproc_per_node=8 --max-restarts=3 tools/train.py -opt options/fmanet_stage2.yml --launcher pytorch': (
        Parse(REDS_TRAINING + ', 8 GPUs')
    ),
    # ----- evaluation, inference, benchmark, visualisation (lane B)
    'python tools/test.py -opt options/baselines/demo_basicvsr.yml --chunk 4 --overlap 2': Run(
        'B', ('results/demo_BasicVSR/demo_val_metrics.csv',)
    ),
    'python tools/test.py -opt options/test_fmanet_reds4.yml': Parse(REDS + ' and ' + RELEASED),
    'python tools/test.py -opt options/test_fmanet_reds4.yml --ckpt '
    'experiments/FMANet_REDS_stage2/models/net_g_latest.pth': Parse(REDS + ' and a REDS-trained run'),
    'python tools/test.py -opt options/test_fmanet_folder.yml --ckpt my.pth --device cpu --save-img': Run(
        'B', ('results/FMANet_folder/visualization/folder/000/00000001.png',)
    ),
    'python tools/inference.py -i datasets/REDS/val_blur_bicubic/X4/000 -o results/000 --ckpt FMANet_REDS.pth': Parse(
        REDS + ' and ' + RELEASED
    ),
    'python tools/inference.py -i blurry.mp4 -o restored.mp4 --ckpt FMANet_REDS.pth --tile 128 --tile-overlap 32 '
    '--fp16': Parse(RELEASED + '; --fp16 needs a GPU'),
    'python tools/inference.py -i clip/ -o out/ --ckpt my.pth -opt options/test_fmanet_folder.yml --device cpu': Run(
        'B', ('out/00000000.png', 'out/00000001.png')
    ),
    'python tools/inference.py -i phone.mov -o part.mkv --ckpt my.pth --start 12.5 --end 20 --codec libx265': Run(
        'B', ('part.mkv',)
    ),
    'python tools/benchmark.py': Parse('six released-size models in subprocesses: minutes of CPU'),
    'python tools/benchmark.py --models FMANet,BasicVSR --small --size 32x32 --runs 3': Run(
        'A', ('results/benchmark/benchmark.md',), ('--no-isolate', '--frames', '3', '--warmup', '0', '--runs', '1')
    ),
    'python tools/benchmark.py --models Bicubic --checkpoints FMANet=options/demo_stage2.yml '
    'EDVR=options/baselines/demo_edvr.yml BasicVSR=options/baselines/demo_basicvsr.yml:'
    'experiments/demo_BasicVSR/models/net_g_800.pth': Parse('needs the runs of make benchmark (hours of CPU)'),
    'python tools/benchmark_baselines.py --iters 20': Parse('trains five demo models: about 17 min of CPU'),
    'python tools/benchmark.py --models FMANet,BasicVSR,Bicubic --ckpt FMANet=FMANet_REDS.pth --ckpt '
    'BasicVSR=BasicVSR_REDS4.pth --lq-root datasets/REDS/train_blur_bicubic/X4 --gt-root datasets/REDS/train_sharp '
    '--clips 000,011,015,020': Parse(REDS + ' and released checkpoints'),
    'python tools/visualize.py -i datasets/REDS/train_blur_bicubic/X4/000 --gt datasets/REDS/train_sharp/000 '
    '--frame 50 --roi 60,120,64,64 --pixels 32,32 10,50 --ckpt FMANet_REDS.pth -o results/vis_000_50': Parse(
        REDS + ' and ' + RELEASED
    ),
    # ----- OpenMMLab
    'python tools/train.py options/mm/demo_stage1.py': Run('B', ('work_dirs/demo_stage1/iter_2.pth',), MM_TINY),
    'python tools/train.py options/mm/demo_stage2.py': Run('B', ('work_dirs/demo_stage2/iter_2.pth',), MM_TINY_STAGE2),
    'python tools/train.py options/mm/fmanet_stage1_reds.py': Parse(REDS_TRAINING),
    'python tools/train.py options/mm/fmanet_stage2_reds.py --amp': Parse(REDS_TRAINING + '; --amp needs a GPU'),
    'torchrun --nproc_per_node=8 tools/train.py options/mm/fmanet_stage2_reds.py --launcher pytorch --cfg-options '
    'train_dataloader.batch_size=1': Parse(REDS_TRAINING + ', 8 GPUs'),
    'torchrun --nproc_per_node=2 tools/train.py options/mm/demo_stage2.py --launcher pytorch': Parse(
        'three more processes (torchrun and two gloo workers): the same 2-process run is tests/test_mm.py'
        '::test_torchrun_two_processes_gloo'
    ),
    'python tools/train.py options/mm/fmanet_stage2_reds.py --resume': Parse(REDS_TRAINING),
    'python tools/train.py options/mm/fmanet_stage2_reds.py --resume work_dirs/fmanet_stage2_reds/iter_50000.pth': (
        Parse(REDS_TRAINING)
    ),
    'python tools/train.py options/mm/demo_stage2.py --cfg-options train_cfg.max_iters=1600 '
    'optim_wrapper.net_r.optimizer.lr=5e-4': Run('B', ('work_dirs/demo_stage2/iter_2.pth',), MM_TINY_STAGE2[1:]),
    'python tools/train.py options/mm/fmanet_stage2_reds.py --cfg-options model.net_d_checkpoint=None '
    'model.generator_checkpoint=experiments/pretrained_models/FMANet_REDS.pth': Parse(REDS + ' and ' + RELEASED),
}

RUNS = [text for text, kind in COMMANDS.items() if isinstance(kind, Run)]
CHECKED = [text for text, kind in COMMANDS.items() if not isinstance(kind, Skip)]


# ----------------------------------------------------------------- extraction


def test_extraction_joins_continuations_drops_comments_and_reads_only_command_lines():
    readme = '\n'.join(
        [
            'Run `python tools/a.py --x 1` or `make demo`; `torchrun` alone is a word.',
            '```bash',
            '# a comment line',
            'python tools/b.py --in "a # b" \\',
            '    --out c   # trailing comment',
            '',
            'make test',
            '```',
            '```',
            'datasets/REDS/',
            '  train_sharp/<clip>',
            'python tools/c.py',
            '```',
            '```python',
            'import fmanet_plugin',
            '```',
        ]
    )
    assert extract_commands(readme) == [
        Command('python tools/a.py --x 1', 1),
        Command('make demo', 1),
        Command('python tools/b.py --in "a # b" --out c', 4),
        Command('make test', 7),
        Command('python tools/c.py', 12),
    ]
    assert strip_comment("echo 'x # y' # z") == "echo 'x # y' "


def test_every_readme_command_is_classified():
    found = {}
    for command in extract_commands(README.read_text()):
        found.setdefault(command.text, command.line)
    unclassified = [f'README line {line}: {text}' for text, line in found.items() if text not in COMMANDS]
    stale = [text for text in COMMANDS if text not in found]
    assert not unclassified, 'add these README commands to COMMANDS:\n' + '\n'.join(unclassified)
    assert not stale, 'no longer in the README, remove from COMMANDS:\n' + '\n'.join(stale)


@pytest.mark.parametrize('text', [t for t, kind in COMMANDS.items() if isinstance(kind, Skip) and t[:5] == 'make '])
def test_skipped_make_targets_exist(text):
    target = text.split()[1]
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(rf'^{re.escape(target)}:', makefile, re.M), f'no Makefile target {target}'


# ----------------------------------------------------------------- parsing (every command that runs a tool)


def check_launcher(launcher: list[str], script: str, args: list[str]) -> None:
    if launcher[:1] == ['torchrun']:
        from torch.distributed.run import get_args_parser

        try:
            get_args_parser().parse_args([*launcher[1:], script, *args])
        except SystemExit as exit_:
            raise AssertionError(f'torchrun rejects {launcher[1:]} (exit {exit_.code})') from None
    elif launcher[:1] == ['srun']:
        assert launcher[-2:] == ['python', '-u'], launcher
    else:
        assert launcher in (['python'], ['python', '-u']), launcher


def check_repo_file(path: str, namespace) -> None:
    file = ROOT / path
    assert file.exists(), f'{path} does not exist'
    if file.suffix == '.yml':
        with open(file) as f:
            opt = yaml.load(f, Loader=basicsr.utils.options.ordered_yaml()[0])
        prepare_options(opt, path)
    elif path.startswith('options/') and file.suffix == '.py':
        cfg = Config.fromfile(str(file))
        if getattr(namespace, 'cfg_options', None):
            cfg.merge_from_dict(namespace.cfg_options)
        check_plugin_config(cfg.to_dict())


@functools.cache
def run_names() -> frozenset[str]:
    """The ``name`` of every BasicSR option file: the folder a run writes under ``experiments/``."""
    names = {'pretrained_models'}  # converted released weights (tools/convert_official_ckpt.py)
    for path in (ROOT / 'options').rglob('*.yml'):
        names.add(yaml.safe_load(path.read_text()).get('name'))
    return frozenset(names)


def check_output_folders(args: list[str]) -> None:
    """Paths into ``experiments/<run>`` and ``work_dirs/<config>`` name a run or config of the repository."""
    for arg in args:
        for run in re.findall(r'(?:^|[=:])experiments/([^/]+)/', arg):
            assert run in run_names(), f'{arg}: no option file has name: {run}'
        for config in re.findall(r'(?:^|[=:])work_dirs/([^/]+)/', arg):
            assert (ROOT / 'options/mm' / f'{config}.py').is_file(), f'{arg}: no config options/mm/{config}.py'


@pytest.mark.parametrize('text', CHECKED)
def test_command_line_parses_and_names_loadable_files(text, monkeypatch):
    split = split_command(text)
    assert (ROOT / split.script).is_file(), f'{split.script} does not exist'
    check_launcher(split.launcher, split.script, split.args)
    monkeypatch.chdir(ROOT)  # relative paths as from the repository root; nothing runs past parse_args
    monkeypatch.setattr(basicsr.utils.options, 'init_dist', basicsr.utils.options.init_dist)  # train.py swaps it
    threads, environ = torch.get_num_threads(), dict(os.environ)
    try:
        parsed = parse_tool_arguments(ROOT / split.script, split.args, monkeypatch)
    finally:
        torch.set_num_threads(threads)  # train.py applies the thread rule before parsing
        os.environ.clear()
        os.environ.update(environ)
    for path in repo_paths(split.args):
        check_repo_file(path, parsed.namespace)
    check_output_folders(split.args)


# ----------------------------------------------------------------- running (no download needed)

SHRUNK_OPTIONS = ('own_footage_stage1.yml', 'own_footage_stage2.yml', 'test_own_footage.yml')


def shrink_options(copy: Path) -> None:
    """TINY_NET as network, 32x32 patches, batch 1 and no enlargement in the copy's own-footage option files."""
    for name in SHRUNK_OPTIONS:
        path = copy / 'options' / name
        opt = yaml.load(path.read_text(), Loader=basicsr.utils.options.ordered_yaml()[0])
        opt['network_g'] = {**opt['network_g'], **TINY_NET}
        if 'train' in opt['datasets']:
            opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=1, dataset_enlarge_ratio=1)
        path.write_text(yaml.dump(opt, Dumper=basicsr.utils.options.ordered_yaml()[1]))


def write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f'{index:08d}.png'), frame)


def prepare_inputs(copy: Path) -> None:
    """The inputs the Run commands expect from the user or from long steps, tiny (see the module docstring)."""
    demo_argv = ['--out', str(copy / 'datasets/demo'), '--num-clips', '2', '--val-clips', '1', '--num-frames', '5']
    assert run_cli(load_tool('make_demo_data').main, [*demo_argv, '--height', '64', '--width', '64']) == 0
    rng = np.random.default_rng(0)

    def smooth(h: int, w: int) -> np.ndarray:
        return cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8), (w, h))

    write_video_with_tone(copy / 'blurry.mp4', [smooth(16, 24) for _ in range(4)], fps=24)
    write_video_with_tone(copy / 'phone.mov', [smooth(8, 8) for _ in range(7)], fps=Fraction(1, 3))  # 0, 3, ... 18 s
    frames = [smooth(8, 8) for _ in range(2)]
    write_frames(copy / 'datasets/my_clips/lq/000', frames)
    write_frames(copy / 'clip', frames)
    torch.manual_seed(0)
    torch.save({'params': FMANet().state_dict()}, copy / 'my.pth')
    basicvsr = yaml.safe_load((copy / 'options/baselines/demo_basicvsr.yml').read_text())['network_g']
    ckpt = copy / 'experiments/demo_BasicVSR/models/net_g_latest.pth'
    ckpt.parent.mkdir(parents=True)
    torch.save({'params': build_network_from_opt(basicvsr).state_dict()}, ckpt)


@pytest.fixture(scope='module')
def readme_runs(tmp_path_factory) -> dict:
    """Runs every Run command (lanes side by side); per command: status, start time, seconds and the lane log."""
    copy = tmp_path_factory.mktemp('readme') / 'repo'
    shutil.copytree(ROOT / 'tools', copy / 'tools', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(ROOT / 'options', copy / 'options', ignore=shutil.ignore_patterns('__pycache__'))
    (copy / 'tests/data').mkdir(parents=True)
    shutil.copy(ROOT / 'tests/data/raft-small.pth', copy / 'tests/data')
    shrink_options(copy)
    prepare_inputs(copy)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT), PYTHONWARNINGS='ignore')
    lanes: dict[str, list[str]] = {}
    for text in RUNS:
        lanes.setdefault(COMMANDS[text].lane, []).append(text)
    procs = {}
    for lane, texts in lanes.items():
        steps = []
        for text in texts:
            split = split_command(text)
            steps.append({'script': split.script, 'args': [*split.args, *COMMANDS[text].extra]})
        (copy / f'lane_{lane}.json').write_text(json.dumps(steps))
        log = open(copy / f'lane_{lane}.log', 'w')
        cmd = [sys.executable, str(RUNNER), f'lane_{lane}.json', f'lane_{lane}_results.json']
        procs[lane] = (subprocess.Popen(cmd, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    runs = {}
    try:
        for proc, _ in procs.values():
            proc.wait(timeout=600)
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    for lane in procs:
        results_file = copy / f'lane_{lane}_results.json'
        results = json.loads(results_file.read_text()) if results_file.exists() else []
        for index, text in enumerate(lanes[lane]):
            result = results[index] if index < len(results) else {'status': 'not reached', 'start': 0, 'seconds': 0}
            runs[text] = {**result, 'index': index, 'log': copy / f'lane_{lane}.log', 'copy': copy}
    return runs


def step_log(run: dict) -> str:
    """The last 4000 characters of the lane log from the command's own ``=== step N:`` line on."""
    log = run['log'].read_text(errors='replace')
    return log[log.find(f'=== step {run["index"]}:') :][-4000:]


@pytest.mark.parametrize('text', RUNS)
def test_command_runs_at_tiny_size(text, readme_runs):
    run = readme_runs[text]
    assert run['status'] == 0, f'exit status {run["status"]}:\n{step_log(run)}'
    for output in COMMANDS[text].outputs:
        path = run['copy'] / output
        assert path.is_file() and path.stat().st_size > 0, f'{output} not written'
        assert path.stat().st_mtime >= run['start'] - 1, f'{output} is older than the command'


def test_inference_start_end_restores_only_that_range(readme_runs):
    # phone.mov has frames at 0, 3, ..., 18 s; --start 12.5 --end 20 keeps 15 and 18 s and, since a frame within half
    # a frame interval of --start counts as starting there (fmanet_plugin.utils.video_io.VideoReader), 12 s
    run = readme_runs[
        'python tools/inference.py -i phone.mov -o part.mkv --ckpt my.pth --start 12.5 --end 20 --codec libx265'
    ]
    assert run['status'] == 0
    with av.open(str(run['copy'] / 'part.mkv')) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.codec_context.name == 'hevc'
    assert [(f.height, f.width) for f in frames] == [(32, 32)] * 3
