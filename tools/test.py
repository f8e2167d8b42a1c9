"""Evaluate an FMA-Net checkpoint on VSRDB test sets: RGB PSNR, Y PSNR, SSIM and tOF per clip and on average.

Examples:
    python tools/test.py -opt options/test_fmanet_reds4.yml
    python tools/test.py -opt options/test_fmanet_folder.yml --ckpt FMANet.pth --device cpu --save-img

Two protocols are reported from the same outputs (every frame of every clip is restored once, with the
temporal window edge-padded at clip ends):

* ``released``: the released test's protocol; the first and last ``N = num_frame // 2`` frames of each clip are
  skipped (``val.released_skip`` overrides ``N``) and tOF uses the consecutive pairs of the kept frames;
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
import logging
import math
import os
import os.path as osp

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.metrics.clip_eval import ClipEvaluator
from fmanet_plugin.utils.atomic_io import atomic_imwrite, atomic_write_text
from fmanet_plugin.utils.checkpoint import load_weights
from fmanet_plugin.utils.cli import format_number
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.options import prepare_options
from fmanet_plugin.utils.restorer import COLOR_ORDERS, CentreFrameRestorer
from fmanet_plugin.utils.runtime import build_network_from_opt, get_tool_logger, resolve_device

import torch
import yaml
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils import get_time_str, tensor2img
from basicsr.utils.options import dict2str, ordered_yaml
from tqdm import tqdm

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
METRICS = ('psnr_rgb', 'psnr_y', 'ssim', 'tof')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='test options YAML')
    parser.add_argument('--ckpt', help='checkpoint (overrides path.pretrain_network_g)')
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
    opt.setdefault('path', {})
    opt.setdefault('val', {})
    if args.ckpt:
        opt['path']['pretrain_network_g'] = args.ckpt
    if not opt['path'].get('pretrain_network_g'):
        raise ValueError(f'{args.opt}: path.pretrain_network_g (or --ckpt) is required')
    if args.results_root:
        opt['path']['results_root'] = args.results_root
    if not opt['path'].get('results_root'):
        opt['path']['results_root'] = osp.join(ROOT, 'results', opt['name'])
    if args.save_img:
        opt['val']['save_img'] = True
    if args.tile is not None:
        opt['val']['tile'] = args.tile
    if args.tile_overlap is not None:
        opt['val']['tile_overlap'] = args.tile_overlap
    if args.amp:
        opt['val']['amp'] = args.amp
    color = opt.get('model_color', 'rgb')
    if color not in COLOR_ORDERS:
        raise ValueError(f'{args.opt}: model_color must be one of {COLOR_ORDERS}, got {color!r}')
    for phase_name, dataset_opt in opt['datasets'].items():
        dataset_opt['phase'] = 'test'
        dataset_opt.setdefault('scale', opt.get('scale', 4))
        dataset_opt.setdefault('name', phase_name)
    return opt


def pick_device(opt: dict, requested: str | None) -> torch.device:
    if requested is None and opt.get('num_gpu', 'auto') == 0:
        return torch.device('cpu')
    return resolve_device(requested)


def evaluate_dataset(restorer: CentreFrameRestorer, loader, opt: dict, logger: logging.Logger) -> ClipEvaluator:
    """Restore every frame of the dataset and score it (tOF per clip once the clip is complete)."""
    dataset_name = loader.dataset.opt['name']
    val = opt['val']
    image_dir = osp.join(opt['path']['results_root'], 'visualization', dataset_name)
    evaluator = ClipEvaluator(crop_border=int(val.get('crop_border', 4)))
    for batch in tqdm(loader, desc=dataset_name, unit='frame', dynamic_ncols=True):
        output = restorer(batch['lq'], input_color='rgb').cpu()
        for b, clip in enumerate(batch['clip']):
            stem = batch['frame'][b]
            out_img = tensor2img(output[b], rgb2bgr=True)
            if val.get('save_img', False):
                atomic_imwrite(out_img, osp.join(image_dir, clip, f'{stem}.png'))
            gt_img = tensor2img(batch['gt'][b], rgb2bgr=True) if 'gt' in batch else None
            evaluator.add(clip, int(batch['frame_idx'][b]), int(batch['num_frames'][b]), stem, out_img, gt_img)
    for message in evaluator.finish():
        logger.warning(f'{dataset_name}/{message}')
    return evaluator


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
    logger.info(dict2str(opt))

    device = pick_device(opt, args.device)
    model = build_network_from_opt(opt['network_g'])
    ckpt = opt['path']['pretrain_network_g']
    key = load_weights(model, ckpt, opt['path'].get('param_key_g'))
    logger.info(f'Loaded {ckpt} [{key}] strictly into {opt["network_g"]["type"]}; device {device}')
    val = opt['val']
    restorer = CentreFrameRestorer(
        model.to(device),
        scale=int(opt.get('scale', 4)),
        model_color=opt.get('model_color', 'rgb'),
        tile=val.get('tile'),
        tile_overlap=int(val.get('tile_overlap', 16)),
        amp=val.get('amp'),
    )
    num_seq = int(opt['network_g'].get('num_seq', 3))
    for _, dataset_opt in sorted(opt['datasets'].items()):
        if int(dataset_opt.get('num_frame', num_seq)) != num_seq:
            raise ValueError(
                f'dataset {dataset_opt["name"]}: num_frame {dataset_opt.get("num_frame")} '
                f'!= network_g.num_seq {num_seq}'
            )
        dataset = build_dataset(dataset_opt)
        loader = build_dataloader(dataset, dataset_opt, num_gpu=0, dist=False, sampler=None)
        name = dataset_opt['name']
        logger.info(f'Testing {name}: {len(dataset)} frames')
        evaluator = evaluate_dataset(restorer, loader, opt, logger)
        if not evaluator.has_scores:
            logger.info(f'{name}: no ground truth, outputs only')
            continue
        skip = val.get('released_skip')
        skip = num_seq // 2 if skip is None else int(skip)
        protocols = {
            'released': (
                f'Released protocol (first/last {skip} frames of each clip skipped)',
                *evaluator.summarise(skip),
            ),
            'all': ('All frames (temporal windows edge-padded at clip ends)', *evaluator.summarise(0)),
        }
        title = f'{name}: {opt["network_g"]["type"]} ({osp.basename(ckpt)})'
        markdown = render_markdown(title, protocols)
        atomic_write_text(markdown, osp.join(results_root, f'{name}_metrics.md'))
        atomic_write_text(render_clip_csv(name, protocols), osp.join(results_root, f'{name}_metrics.csv'))
        atomic_write_text(render_frame_csv(name, evaluator), osp.join(results_root, f'{name}_frames.csv'))
        logger.info('\n' + markdown)
    return 0


if __name__ == '__main__':
    main_entry(main)
