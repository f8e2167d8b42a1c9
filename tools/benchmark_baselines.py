"""Train FMA-Net's demo and each demo-size baseline with one budget on the demo data, then benchmark them.

Examples:
    python tools/benchmark_baselines.py                 # the demo budget: 800 iterations each (hours on 2 CPU cores)
    python tools/benchmark_baselines.py --iters 20      # the whole path at a small budget (minutes)

Every model gets the same budget: ``--iters`` iterations (FMA-Net: stage 1 and stage 2 each, as its demo),
batch 4 (as in their option files ``options/demo_stage1.yml``, ``options/demo_stage2.yml``,
``options/baselines/demo_*.yml``) and ``--gt-size`` x ``--gt-size`` GT patches for all (default 96; FMA-Net's own
demo trains on 64). Budgeted copies of the option files go to ``<out-dir>/options/`` with the run
names suffixed ``_it<N>`` and their schedules rescaled to ``N`` (milestones and cosine periods scaled by
``N / total_iter``); validation during training is off (the benchmark evaluates afterwards). Then
``tools/benchmark.py`` scores every run on the demo validation clip (``datasets.val`` of the options) with the same
protocol and prints the table (cost, quality, training budget); ``<out-dir>/benchmark.{md,csv,json,png}``.
The training wall time of each model (FMA-Net: both stages; IconVSR: with its EDVR) is printed and written to
``<out-dir>/train_times.json``.

IconVSR, as in its paper, takes its keyframe features from a pretrained EDVR feature extractor: first a demo EDVR
of the extractor's configuration (``options/baselines/demo_edvr_for_iconvsr.yml``) trains with the same budget,
``tools/make_iconvsr_edvr.py`` keeps its extractor (``<out-dir>/pretrained/``), and IconVSR trains from it
(``network_g.edvr_path``). ``--iconvsr-random-edvr`` skips that: the extractor starts from random weights. The
table's Variant column says which (``EDVR extractor pretrained (...)`` / ``random init``), and the Iterations
column of a pretrained one reads ``N + EDVR extractor``.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

import fmanet_plugin  # noqa: F401  (registers the plugin)
from fmanet_plugin.utils.atomic_io import atomic_write_text
from fmanet_plugin.utils.run_info import latest_checkpoint, read_run_options
from fmanet_plugin.utils.runtime import get_tool_logger

import yaml
from basicsr.utils.options import ordered_yaml

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
# table name -> option files trained in order (the last one is benchmarked)
MODELS = {
    'FMANet': ('options/demo_stage1.yml', 'options/demo_stage2.yml'),
    'EDVR': ('options/baselines/demo_edvr.yml',),
    'BasicVSR': ('options/baselines/demo_basicvsr.yml',),
    'IconVSR': ('options/baselines/demo_edvr_for_iconvsr.yml', 'options/baselines/demo_iconvsr.yml'),
    'BasicVSRPlusPlus': ('options/baselines/demo_basicvsrpp.yml',),
}


def budgeted_options(opt: dict, iters: int, renamed: dict[str, str], gt_size: int) -> dict:
    """A copy of ``opt`` trained for ``iters`` iterations on ``gt_size`` patches: run renamed, schedule rescaled,
    validation off.

    Args:
        opt (dict): Demo options.
        iters (int): Iterations.
        renamed (dict[str, str]): Original run name -> budgeted name, for ``path.pretrain_network_d``.
        gt_size (int): GT patch size of every model (the demo option files differ: FMA-Net 64, baselines 96).
    """
    opt = dict(opt)
    opt['datasets'] = dict(opt['datasets'], train=dict(opt['datasets']['train'], gt_size=gt_size))
    total = int(opt['train']['total_iter'])
    opt['name'] = f'{opt["name"]}_it{iters}'
    opt['train'] = dict(opt['train'], total_iter=iters)
    scheduler = dict(opt['train']['scheduler'])
    if 'milestones' in scheduler:
        scheduler['milestones'] = [max(1, round(m * iters / total)) for m in scheduler['milestones']]
    if 'periods' in scheduler:
        scheduler['periods'] = [max(1, round(p * iters / total)) for p in scheduler['periods']]
    opt['train']['scheduler'] = scheduler
    opt['val'] = dict(opt.get('val') or {}, val_freq=10 * iters + 1)  # evaluated by the benchmark afterwards
    opt['logger'] = dict(opt.get('logger') or {}, print_freq=max(1, min(50, iters // 4)), save_checkpoint_freq=iters)
    path = dict(opt.get('path') or {})
    for old, new in renamed.items():
        if path.get('pretrain_network_d'):
            path['pretrain_network_d'] = path['pretrain_network_d'].replace(f'/{old}/', f'/{new}/')
    opt['path'] = path
    return opt


def make_iconvsr_extractor(edvr_opt_path: str, edvr_opt: dict, iconvsr_source: str, out_dir: str) -> str:
    """Keep the feature extractor of a trained demo EDVR for IconVSR (``tools/make_iconvsr_edvr.py``).

    Returns:
        str: The extractor file, for IconVSR's ``network_g.edvr_path``.
    """
    out = osp.join(out_dir, 'pretrained', f'{edvr_opt["name"]}_extractor.pth')
    cmd = [sys.executable, osp.join(ROOT, 'tools/make_iconvsr_edvr.py'), latest_checkpoint(edvr_opt), '--out', out]
    cmd += ['--iconvsr-opt', osp.join(ROOT, iconvsr_source), '--edvr-opt', edvr_opt_path]
    subprocess.run(cmd, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=800, help='training iterations of every model (default 800)')
    parser.add_argument('--gt-size', type=int, default=96, help='GT patch size of every model (default 96)')
    parser.add_argument('--models', default=','.join(MODELS), help=f'comma-separated, from {", ".join(MODELS)}')
    parser.add_argument('--out-dir', default='results/benchmark_baselines', help='output folder')
    parser.add_argument('--runs', type=int, default=3, help='timed forwards of the benchmark (default 3)')
    parser.add_argument(
        '--iconvsr-random-edvr',
        action='store_true',
        help="IconVSR's EDVR feature extractor from random weights (default: a demo EDVR trained first)",
    )
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    names = [n.strip() for n in args.models.split(',') if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f'unknown models {unknown}; choose from {", ".join(MODELS)}')
    logger = get_tool_logger()
    if not osp.isdir('datasets/demo'):
        logger.info('benchmark_baselines: datasets/demo missing, generating it (tools/make_demo_data.py)')
        subprocess.run(
            [sys.executable, osp.join(ROOT, 'tools/make_demo_data.py'), '--out', 'datasets/demo'], check=True
        )
    opt_dir = osp.join(args.out_dir, 'options')
    os.makedirs(opt_dir, exist_ok=True)
    entries, train_times = [], {}
    for name in names:
        renamed, start, edvr_path = {}, time.perf_counter(), None
        sources = MODELS[name]
        if name == 'IconVSR' and args.iconvsr_random_edvr:
            sources = sources[1:]
        for i, source in enumerate(sources):
            opt = budgeted_options(read_run_options(osp.join(ROOT, source)), args.iters, renamed, args.gt_size)
            renamed[opt['name'].removesuffix(f'_it{args.iters}')] = opt['name']
            if 'IconVSR' in opt['network_g']['type']:
                opt['network_g'] = dict(opt['network_g'], edvr_path=edvr_path)  # None: random extractor
            opt_path = osp.join(opt_dir, f'{opt["name"]}.yml')
            atomic_write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]), opt_path)
            logger.info(f'benchmark_baselines: training {opt["name"]} ({args.iters} iterations)')
            subprocess.run([sys.executable, osp.join(ROOT, 'tools/train.py'), '-opt', opt_path], check=True)
            if name == 'IconVSR' and opt['network_g']['type'] == 'EDVR':
                edvr_path = make_iconvsr_extractor(opt_path, opt, sources[i + 1], args.out_dir)
        train_times[name] = time.perf_counter() - start
        entries.append(f'{name}={opt_path}:{latest_checkpoint(opt)}')
        logger.info(f'benchmark_baselines: {name} trained in {train_times[name]:.0f} s')
    atomic_write_text(json.dumps(train_times, indent=2), osp.join(args.out_dir, 'train_times.json'))
    cmd = [sys.executable, osp.join(ROOT, 'tools/benchmark.py'), '--models', 'Bicubic', '--checkpoints', *entries]
    cmd += ['--out-dir', args.out_dir, '--runs', str(args.runs)]
    code = subprocess.run(cmd).returncode
    times = ', '.join(f'{n} {t:.0f} s' for n, t in train_times.items())
    logger.info(
        f'benchmark_baselines: training wall time ({args.iters} iterations; FMANet: both stages; IconVSR: with its '
        f'EDVR extractor unless --iconvsr-random-edvr): {times}'
    )
    return code


if __name__ == '__main__':
    sys.exit(main())
