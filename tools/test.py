"""Evaluate any BasicSR video network checkpoint on VSRDB test sets: RGB PSNR, Y PSNR, SSIM and tOF per clip and on
average.

Examples:
    python tools/test.py -opt options/test_fmanet_reds4.yml
    python tools/test.py -opt options/test_fmanet_folder.yml --ckpt FMANet.pth --device cpu --save-img
    python tools/test.py -opt options/demo_stage2.yml              # a training run's own option file
    python tools/test.py -opt options/baselines/demo_basicvsr.yml --chunk 4 --overlap 2

``-opt`` is a test option file or the training option file of any run (FMA-Net, ``options/baselines/*.yml``,
basicsr's REDS files): the network is ``network_g``, the test sets are the ``datasets`` entries other than
``train`` (e.g. ``datasets.val``; only their frames are used: ``dataroot_lq``, ``dataroot_gt``,
``meta_info_file``, ``clips``, ``exclude_clips``, ``io_backend``). The checkpoint is ``--ckpt``, else
``path.pretrain_network_g``, else the run's ``experiments/<name>/models/net_g_latest.pth``.

Every frame of every clip is restored once (``fmanet_plugin.utils.clip_restoration.restore_clip``):
sliding-window networks (FMA-Net, EDVR) on windows edge-padded at clip ends, recurrent networks (BasicVSR,
IconVSR, BasicVSR++) over each whole clip, or with ``--chunk K --overlap O`` in pieces of K kept frames with O
context frames on each side (for clips that do not fit in memory; stated in the report). Two protocols are
reported from the same outputs:

* ``released``: the first and last ``N`` frames of each clip are skipped and tOF uses the consecutive pairs of
  the kept frames. ``N`` = ``--skip`` / ``val.released_skip``, default 1 for **every** model: the released
  FMA-Net test's ``num_seq // 2`` with T = 3, so that a 5-frame EDVR or a recurrent model is scored on exactly
  the same frames as FMA-Net;
* ``all``: every frame, every consecutive pair.

Per frame (uint8 BGR images, basicsr metrics): RGB PSNR and Y PSNR with ``val.crop_border`` (4) pixels cropped,
SSIM (11x11 Gaussian, per channel) with the same border; tOF per consecutive pair
(``fmanet_plugin.metrics.tof_metric``). Clip values are means over its frames (pairs); the average row is the
mean over all frames (pairs) of all clips, as in the released test. Written atomically to
``<results_root>/<dataset>_metrics.md``, ``<dataset>_metrics.csv`` (per clip) and ``<dataset>_frames.csv`` (per
frame); outputs to ``<results_root>/visualization/<dataset>/<clip>/<frame>.png`` with ``val.save_img``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import os.path as osp

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.metrics.clip_eval import ClipEvaluator
from fmanet_plugin.metrics.clip_scoring import DEFAULT_SKIP, ClipRestorer, open_test_set, score_test_set, test_sets
from fmanet_plugin.utils.atomic_io import atomic_write_text
from fmanet_plugin.utils.checkpoint import load_weights
from fmanet_plugin.utils.cli import format_number
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.options import prepare_options
from fmanet_plugin.utils.restorer import COLOR_ORDERS
from fmanet_plugin.utils.runtime import build_network_from_opt, get_tool_logger, resolve_device

import torch
import yaml
from basicsr.utils import get_time_str
from basicsr.utils.options import dict2str, ordered_yaml

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
METRICS = ('psnr_rgb', 'psnr_y', 'ssim', 'tof')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='test options YAML, or the training options of any run')
    parser.add_argument('--ckpt', help="checkpoint (default: path.pretrain_network_g, else the run's latest)")
    parser.add_argument('--chunk', type=int, help='recurrent networks: kept frames per piece (default: whole clips)')
    parser.add_argument('--overlap', type=int, default=0, help='recurrent networks: context frames per side')
    parser.add_argument('--skip', type=int, help=f'frames skipped at each clip end (val.released_skip; {DEFAULT_SKIP})')
    parser.add_argument('--device', default=None, help="'cpu', 'cuda', 'cuda:1' (default: num_gpu / auto)")
    parser.add_argument('--results-root', help='output folder (default: path.results_root or results/<name>)')
    parser.add_argument('--save-img', action='store_true', help='also write the restored frames (val.save_img)')
    parser.add_argument('--tile', type=int, help='LR tile size (val.tile); 0 = whole frames')
    parser.add_argument('--tile-overlap', type=int, help='tile overlap in LR pixels (val.tile_overlap)')
    amp = parser.add_mutually_exclusive_group()
    amp.add_argument('--fp16', action='store_const', const='fp16', dest='amp', help='float16 autocast (GPU)')
    amp.add_argument('--bf16', action='store_const', const='bf16', dest='amp', help='bfloat16 autocast (GPU)')
    return parser.parse_args(argv)


def load_options(args: argparse.Namespace) -> dict:
    """Read the YAML (basicsr's ordered loader) and apply the command-line overrides."""
    if not osp.isfile(args.opt):
        raise FileNotFoundError(f'options file not found: {args.opt}')
    with open(args.opt) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    if not isinstance(opt, dict):
        raise ValueError(f'{args.opt}: expected a YAML mapping of options, got {type(opt).__name__}')
    prepare_options(opt, args.opt)
    for key in ('name', 'datasets', 'network_g'):
        if key not in opt:
            raise ValueError(f'{args.opt}: missing top-level key {key!r}')
    if opt['network_g'].get('stage', 2) == 1:
        raise ValueError(f'{args.opt}: network_g.stage is 1 (Net_D only, no restored frame); test a stage-2 run')
    opt['path'] = dict(opt.get('path') or {})
    opt['val'] = dict(opt.get('val') or {})
    latest = osp.join('experiments', opt['name'], 'models', 'net_g_latest.pth')
    ckpt = args.ckpt or opt['path'].get('pretrain_network_g') or (latest if osp.isfile(latest) else None)
    if not ckpt:
        raise ValueError(f'{args.opt}: give --ckpt (no path.pretrain_network_g and no {latest})')
    opt['path']['pretrain_network_g'] = ckpt
    if args.results_root:
        opt['path']['results_root'] = args.results_root
    if not opt['path'].get('results_root'):
        opt['path']['results_root'] = osp.join(ROOT, 'results', opt['name'])
    for option, key in (('save_img', 'save_img'), ('tile', 'tile'), ('tile_overlap', 'tile_overlap')):
        value = getattr(args, option)
        if value is not None and value is not False:
            opt['val'][key] = value
    if args.amp:
        opt['val']['amp'] = args.amp
    if args.skip is not None:
        opt['val']['released_skip'] = args.skip
    if args.chunk is not None and args.chunk < 1 or args.overlap < 0:
        raise ValueError(f'--chunk must be >= 1 and --overlap >= 0, got {args.chunk} and {args.overlap}')
    color = opt.get('model_color', 'rgb')
    if color not in COLOR_ORDERS:
        raise ValueError(f'{args.opt}: model_color must be one of {COLOR_ORDERS}, got {color!r}')
    opt['test_sets'] = test_sets(opt, args.opt)
    return opt


def pick_device(opt: dict, requested: str | None) -> torch.device:
    if requested is None and opt.get('num_gpu', 'auto') == 0:
        return torch.device('cpu')
    return resolve_device(requested)


def render_markdown(title: str, protocols: dict[str, tuple[str, dict, dict]]) -> str:
    lines = [f'# {title}', '']
    for description, rows, average in protocols.values():
        lines += [f'## {description}', '', '| Clip | Frames | PSNR RGB (dB) | PSNR Y (dB) | SSIM | tOF |']
        lines.append('|---|---:|---:|---:|---:|---:|')
        for clip, row in [*rows.items(), ('**Average**', average)]:
            cells = [
                format_number(row['psnr_rgb'], 2),
                format_number(row['psnr_y'], 2),
                format_number(row['ssim'], 4),
                format_number(row['tof'], 3),
            ]
            lines.append(f'| {clip} | {row["frames"]} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def render_clip_csv(dataset: str, protocols: dict[str, tuple[str, dict, dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['dataset', 'protocol', 'clip', 'frames', *METRICS])
    for protocol, (_, rows, average) in protocols.items():
        for clip, row in [*rows.items(), ('average', average)]:
            writer.writerow([dataset, protocol, clip, row['frames'], *(_csv_value(row[m]) for m in METRICS)])
    return buffer.getvalue()


def render_frame_csv(dataset: str, evaluator: ClipEvaluator) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['dataset', 'clip', 'frame', 'frame_idx', 'psnr_rgb', 'psnr_y', 'ssim', 'tof_with_previous'])
    for clip, record in evaluator.records.items():
        for idx in sorted(record.stems):
            values = (_csv_value(record.scores[m].get(idx)) for m in METRICS)
            writer.writerow([dataset, clip, record.stems[idx], idx, *values])
    return buffer.getvalue()


def _csv_value(value: float | None) -> str:
    return '' if value is None or math.isnan(value) else repr(float(value))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opt = load_options(args)
    results_root = opt['path']['results_root']
    os.makedirs(results_root, exist_ok=True)
    log_file = osp.join(results_root, f'test_{opt["name"]}_{get_time_str()}.log')
    logger = get_tool_logger(log_file)
    logger.info(dict2str({k: v for k, v in opt.items() if k != 'test_sets'}))

    device = pick_device(opt, args.device)
    model = build_network_from_opt(opt['network_g'])
    ckpt = opt['path']['pretrain_network_g']
    key = load_weights(model, ckpt, opt['path'].get('param_key_g'))
    logger.info(f'Loaded {ckpt} [{key}] strictly into {opt["network_g"]["type"]}; device {device}')
    val = opt['val']
    restorer = ClipRestorer(
        model.to(device),
        scale=int(opt.get('scale', 4)),
        model_color=opt.get('model_color', 'rgb'),
        chunk=args.chunk,
        overlap=args.overlap,
        tile=val.get('tile'),
        tile_overlap=int(val.get('tile_overlap', 16)),
        amp=val.get('amp'),
    )
    skip = val.get('released_skip')
    skip = DEFAULT_SKIP if skip is None else int(skip)
    for name, set_opt in opt['test_sets'].items():
        test_set = open_test_set(set_opt)
        logger.info(f'Testing {name}: {len(test_set.clips)} clips; {restorer.describe()}')
        image_dir = osp.join(results_root, 'visualization', name) if val.get('save_img', False) else None
        evaluator = score_test_set(restorer, test_set, device, int(val.get('crop_border', 4)), image_dir)
        if not evaluator.has_scores:
            logger.info(f'{name}: no ground truth, outputs only')
            continue
        protocols = {
            'released': (
                f'Released protocol (first/last {skip} frames of each clip skipped)',
                *evaluator.summarise(skip),
            ),
            'all': ('All frames (temporal windows edge-padded at clip ends)', *evaluator.summarise(0)),
        }
        title = f'{name}: {opt["network_g"]["type"]} ({osp.basename(ckpt)}), {restorer.describe()}'
        markdown = render_markdown(title, protocols)
        atomic_write_text(markdown, osp.join(results_root, f'{name}_metrics.md'))
        atomic_write_text(render_clip_csv(name, protocols), osp.join(results_root, f'{name}_metrics.csv'))
        atomic_write_text(render_frame_csv(name, evaluator), osp.join(results_root, f'{name}_frames.csv'))
        logger.info('\n' + markdown)
    return 0


if __name__ == '__main__':
    main_entry(main)
