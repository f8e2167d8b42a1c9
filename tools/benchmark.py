"""Compare FMA-Net with BasicSR's video SR models on one input size: parameters, MACs, latency, peak memory and,
given checkpoints and a test set, PSNR / SSIM / tOF on the same frames.

Examples:
    python tools/benchmark.py                                   # all models, LR 64x64, device auto
    python tools/benchmark.py --models FMANet,BasicVSR --small --size 64x64 --runs 3
    python tools/benchmark.py --models FMANet,Bicubic --ckpt FMANet=FMANet_REDS.pth \\
        --lq-root datasets/REDS/train_blur_bicubic/X4 --gt-root datasets/REDS/train_sharp --clips 000,011,015,020

Models (built from basicsr's ``ARCH_REGISTRY`` by name, published REDS configurations; ``--small`` shrinks
them for smoke tests): ``FMANet`` and ``EDVR`` restore the centre frame of a sliding window (3 and 5 frames,
edge-padded at clip ends); ``BasicVSR``, ``IconVSR`` and ``BasicVSRPlusPlus`` are recurrent and restore a whole
sequence of ``--frames`` frames; ``Bicubic`` upsamples the centre frame. Everything is reported **per output
frame**: a recurrent model's MACs and latency are divided by the sequence length.

* Parameters: ``sum(p.numel())``. MACs: ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2 for one forward;
  torchvision's ``deform_conv2d`` is counted like the convolution it performs (its bilinear sampling is not),
  ``grid_sample`` and interpolation are not counted (so Bicubic shows 0).
* Latency: ``--warmup`` untimed forwards, then the median of ``--runs`` timed ones (CUDA synchronised).
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the warm-up and timed forwards (weights
  included); on CPU the peak RSS (``VmHWM``, reset just before the model is built) minus the RSS at that moment,
  i.e. weights + activations + allocator overhead. Each model runs in its own subprocess so the peak is its own
  (``--no-isolate`` runs in-process and leaves CPU memory blank).
* BasicVSR++: basicsr 1.4.2 builds its deformable alignment only when CUDA is available. On CPU this tool builds
  it anyway (the model is constructed as if CUDA were present; torchvision's ``deform_conv2d`` runs on CPU), so
  the published architecture is measured; ``BasicVSRPlusPlus_noalign`` measures basicsr's CPU fallback without
  alignment. The Variant column says which was measured.
* Quality (``--lq-root``/``--gt-root``; models without a checkpoint other than Bicubic are skipped): every frame
  of every clip is restored, the first/last ``--skip-ends`` frames of each clip are left out for all models;
  RGB PSNR and SSIM with a 4-pixel border, tOF over consecutive kept frames (RGB checkpoints expected).

Output in ``--out-dir``: ``benchmark.md`` (table), ``benchmark.json`` and ``benchmark.png`` (scatter of latency
against PSNR when every model has one, else against MACs).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from unittest import mock

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.metrics.clip_eval import ClipEvaluator, released_frame_metrics
from fmanet_plugin.utils.atomic_io import atomic_write_bytes, atomic_write_text
from fmanet_plugin.utils.checkpoint import load_weights
from fmanet_plugin.utils.cli import format_number, parse_size
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.runtime import (
    build_network_from_opt,
    get_tool_logger,
    reset_peak_rss,
    resolve_device,
    rss_kb,
)

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.data import build_dataset
from basicsr.data.data_util import generate_frame_indices
from basicsr.utils import img2tensor, tensor2img
from torch.utils.flop_counter import FlopCounterMode

SCALE = 4


@dataclass
class ModelSpec:
    """How to build and drive one model.

    Attributes:
        arch (str): ARCH_REGISTRY name (``None`` for bicubic).
        kind (str): ``'window'`` (centre frame of ``window`` frames) or ``'recurrent'`` (whole sequence).
        full (dict): Published configuration. small (dict): Smoke-test configuration.
        window (int): Input frames of a sliding-window model.
        cuda_alignment (bool | None): BasicVSR++ only: build the deformable alignment (True) or basicsr's
            no-alignment fallback (False) regardless of CUDA.
    """

    arch: str | None
    kind: str
    full: dict = field(default_factory=dict)
    small: dict = field(default_factory=dict)
    window: int = 1
    cuda_alignment: bool | None = None


FMANET_SMALL = dict(
    dim=6,
    num_flow=3,
    num_heads=1,
    num_rdb=1,
    growth_rate=4,
    num_dense_layer=1,
    num_frma=1,
    num_attn_block=1,
    ds_kernel_size=4,
    us_kernel_size=3,
)
MODELS = {
    'FMANet': ModelSpec('FMANet', 'window', {}, FMANET_SMALL, window=3),
    'EDVR': ModelSpec(
        'EDVR',
        'window',
        dict(num_feat=64, num_frame=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=10),  # EDVR-M
        dict(num_feat=16, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1),
        window=5,
    ),
    'BasicVSR': ModelSpec('BasicVSR', 'recurrent', dict(num_feat=64, num_block=30), dict(num_feat=16, num_block=1)),
    'IconVSR': ModelSpec(
        'IconVSR',
        'recurrent',
        dict(num_feat=64, num_block=30, keyframe_stride=5, temporal_padding=2),
        dict(num_feat=16, num_block=1, keyframe_stride=5, temporal_padding=2),
    ),
    'BasicVSRPlusPlus': ModelSpec(
        'BasicVSRPlusPlus',
        'recurrent',
        dict(mid_channels=64, num_blocks=7),
        dict(mid_channels=16, num_blocks=1),
        cuda_alignment=True,
    ),
    'BasicVSRPlusPlus_noalign': ModelSpec(
        'BasicVSRPlusPlus',
        'recurrent',
        dict(mid_channels=64, num_blocks=7),
        dict(mid_channels=16, num_blocks=1),
        cuda_alignment=False,
    ),
    'Bicubic': ModelSpec(None, 'window', window=1),
}
DEFAULT_MODELS = 'FMANet,EDVR,BasicVSR,IconVSR,BasicVSRPlusPlus,Bicubic'
COLUMNS = (
    'Model',
    'Variant',
    'Params (M)',
    'MACs / frame (G)',
    'Latency / frame (ms)',
    'Peak memory (MB)',
    'PSNR (dB)',
    'SSIM',
    'tOF',
)


class Bicubic(torch.nn.Module):
    """Bicubic x4 upsampling of the centre frame of a (b, t, c, h, w) window (no parameters)."""

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lq[:, lq.shape[1] // 2], scale_factor=SCALE, mode='bicubic', align_corners=False)


def _deform_conv2d_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the convolution inside ``torchvision::deform_conv2d`` (2 per multiply-accumulate)."""
    return 2 * int(np.prod(out_shape)) * int(np.prod(weight_shape[1:]))


def build_model(name: str, small: bool, spynet_none: bool = True) -> torch.nn.Module:
    """Build a benchmark model with random weights (SpyNet/EDVR sub-networks without pretrained files).

    Raises:
        ValueError: For an unknown model name.
    """
    if name not in MODELS:
        raise ValueError(f'unknown model {name!r}; choose from {", ".join(MODELS)}')
    spec = MODELS[name]
    if spec.arch is None:
        return Bicubic()
    opt = {'type': spec.arch, **(spec.small if small else spec.full)}
    if spec.arch in ('BasicVSR', 'IconVSR', 'BasicVSRPlusPlus') and spynet_none:
        opt['spynet_path'] = None
    if spec.cuda_alignment is not None:
        # basicsr decides on torch.cuda.is_available() inside __init__ whether to build the alignment
        with mock.patch('torch.cuda.is_available', return_value=spec.cuda_alignment):
            return build_network_from_opt(opt)
    return build_network_from_opt(opt)


def variant(name: str, small: bool, frames: int, model: torch.nn.Module) -> str:
    spec = MODELS[name]
    if spec.arch is None:
        return 'centre frame'
    text = 'small' if small else ('EDVR-M' if spec.arch == 'EDVR' else 'full')
    if spec.kind == 'window':
        text += f', window {spec.window}' if spec.window > 1 else ', centre frame'
    else:
        text += f', recurrent over {frames}'
    if spec.cuda_alignment is not None:
        built = getattr(model, 'is_with_alignment', False)
        text += ', DCN alignment' if built else ', no alignment (basicsr CPU fallback)'
    return text


def make_forward(name: str, model: torch.nn.Module):
    """Adapter: (b, t, c, h, w) -> (b, n_out, c, 4h, 4w) and the number of output frames per call."""
    spec = MODELS[name]

    def forward(lq: torch.Tensor) -> torch.Tensor:
        out = model(lq)
        out = out['output'] if isinstance(out, dict) else out
        return out.unsqueeze(1) if spec.kind == 'window' else out

    return forward


def check_size(name: str, height: int, width: int, frames: int) -> None:
    """Raise a ValueError when a model cannot run at this LR size / sequence length."""
    spec = MODELS[name]
    if spec.arch == 'EDVR' and (height % 4 or width % 4):
        raise ValueError(f'EDVR needs an LR size divisible by 4 (3-level pyramid), got {height}x{width}')
    if spec.arch == 'BasicVSRPlusPlus' and min(height, width) < 64:
        raise ValueError(f'BasicVSRPlusPlus needs an LR size of at least 64x64, got {height}x{width}')
    if spec.arch == 'IconVSR' and frames < 3:
        raise ValueError(f'IconVSR needs at least 3 frames (temporal reflection padding), got {frames}')


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Build one model and measure it (see the module docstring); returns one table row as a dict."""
    device = resolve_device(args.device)
    height, width = args.size
    check_size(name, height, width, args.frames)
    spec = MODELS[name]
    torch.manual_seed(0)
    num_in = spec.window if spec.kind == 'window' else args.frames
    lq = torch.rand(1, num_in, 3, height, width, device=device)
    reset_peak_rss()
    rss_before = rss_kb('VmRSS')
    model = build_model(name, args.small).to(device).eval()
    row = {'model': name, 'variant': variant(name, args.small, args.frames, model), 'device': str(device)}
    row['load_average'] = os.getloadavg()[0]  # other processes on the machine skew CPU latencies
    row['params_m'] = sum(p.numel() for p in model.parameters()) / 1e6
    forward = make_forward(name, model)
    with torch.no_grad():
        custom = {torch.ops.torchvision.deform_conv2d.default: _deform_conv2d_flop}
        with FlopCounterMode(display=False, custom_mapping=custom) as counter:
            out_frames = forward(lq).shape[1]
        row['gmacs_per_frame'] = counter.get_total_flops() / 2 / out_frames / 1e9
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            forward(lq)
        times = []
        for _ in range(args.runs):
            synchronize(device)
            start = time.perf_counter()
            forward(lq)
            synchronize(device)
            times.append(time.perf_counter() - start)
    row['latency_ms_per_frame'] = statistics.median(times) * 1000 / out_frames
    if device.type == 'cuda':
        row['peak_mem_mb'] = torch.cuda.max_memory_allocated(device) / 2**20
    elif args.isolated_worker:
        row['peak_mem_mb'] = (rss_kb('VmHWM') - rss_before) / 1024
    ckpt = dict(args.ckpt).get(name)
    if args.lq_root and args.gt_root and (ckpt or spec.arch is None):
        if ckpt:
            load_weights(model, ckpt)
        row.update(evaluate_quality(name, forward, args, device))
    return row


def evaluate_quality(name: str, forward, args: argparse.Namespace, device: torch.device) -> dict:
    """PSNR / SSIM / tOF over the test clips (the same kept frames for every model)."""
    spec = MODELS[name]
    dataset_opt = {
        'name': 'benchmark',
        'type': 'VSRDBTestDataset',
        'phase': 'test',
        'scale': SCALE,
        'dataroot_lq': args.lq_root,
        'dataroot_gt': args.gt_root,
        'num_frame': max(spec.window, 1),
        'clips': args.clips,
        'io_backend': {'type': 'disk'},
    }
    dataset = build_dataset(dataset_opt)
    metrics = {k: v for k, v in released_frame_metrics(crop_border=4).items() if k in ('psnr_rgb', 'ssim')}
    evaluator = ClipEvaluator(metrics)
    with torch.no_grad():
        for clip, stems in dataset.clips.items():
            lq = torch.stack(img2tensor([dataset.reader.image('lq', clip, s) for s in stems])).to(device)
            if spec.kind == 'recurrent':
                outs = forward(lq[None])[0]
            else:
                windows = [generate_frame_indices(i, len(stems), spec.window, 'replicate') for i in range(len(stems))]
                outs = torch.cat([forward(lq[indices][None])[0] for indices in windows])
            for i, stem in enumerate(stems):
                gt = tensor2img(img2tensor(dataset.reader.image('gt', clip, stem)))
                evaluator.add(clip, i, len(stems), stem, tensor2img(outs[i].cpu()), gt)
    evaluator.finish()
    _, average = evaluator.summarise(args.skip_ends)
    return {
        'psnr': average['psnr_rgb'],
        'ssim': average['ssim'],
        'tof': None if np.isnan(average['tof']) else average['tof'],
        'eval_frames': average['frames'],
    }


def run_isolated(name: str, args: argparse.Namespace, argv: list[str]) -> dict:
    """Measure ``name`` in a fresh Python process (its own peak RSS) and read back its JSON row."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, 'row.json')
        cmd = [sys.executable, os.path.abspath(__file__), *argv, '--models', name, '--worker-out', result]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.isfile(result):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
            return {'model': name, 'error': tail[0]}
        with open(result) as f:
            return json.load(f)


def render_markdown(rows: list[dict], args: argparse.Namespace) -> str:
    device = str(resolve_device(args.device))
    if device == 'cpu':
        cpu = platform.processor() or platform.machine()
        where = f'CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)'
    else:
        where = torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else device
    if device.startswith('cuda'):
        memory = 'CUDA max allocated'
    else:
        memory = 'not measured (--no-isolate)' if args.no_isolate else 'increase of peak RSS, own subprocess'
    loads = ', '.join(f'{r["model"]} {r["load_average"]:.1f}' for r in rows if 'load_average' in r)
    lines = [
        f'Input: LR {args.size[0]}x{args.size[1]}, x{SCALE}; recurrent models over {args.frames} frames. '
        f'Device: {where}; torch {torch.__version__}. Latency: median of {args.runs} after {args.warmup} warm-up. '
        f'Peak memory: {memory}. Per output frame.'
        + (f' 1-min load average when each model started: {loads}.' if loads else ''),
        '',
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '|'.join(['---'] * 2 + ['---:'] * (len(COLUMNS) - 2)) + '|',
    ]
    for row in rows:
        if 'error' in row:
            lines.append(f'| {row["model"]} | failed: {row["error"]} |' + ' |' * (len(COLUMNS) - 2))
            continue
        cells = [
            row['model'],
            row['variant'],
            format_number(row['params_m'], 3),
            format_number(row['gmacs_per_frame'], 3),
            format_number(row['latency_ms_per_frame'], 1),
            format_number(row.get('peak_mem_mb'), 0),
            format_number(row.get('psnr'), 2),
            format_number(row.get('ssim'), 4),
            format_number(row.get('tof'), 3),
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def render_plot(rows: list[dict], path: str, title: str = '') -> None:
    """Scatter of latency per frame against PSNR (when every model has one) or MACs per frame."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [r for r in rows if 'error' not in r]
    use_psnr = bool(rows) and all(r.get('psnr') is not None for r in rows)
    key, label = ('psnr', 'PSNR (dB)') if use_psnr else ('gmacs_per_frame', 'MACs per frame (G)')
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for row in rows:
        x, y = max(row['latency_ms_per_frame'], 1e-3), row[key]
        ax.scatter(x, y)
        ax.annotate(row['model'], (x, y), textcoords='offset points', xytext=(4, 4), fontsize=8)
    ax.set_xscale('log')
    if not use_psnr and rows and all(r[key] > 0 for r in rows):
        ax.set_yscale('log')
    ax.set_xlabel('latency per output frame (ms)')
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png')
    plt.close(fig)
    atomic_write_bytes(buffer.getvalue(), path)


def parse_ckpt(text: str) -> tuple[str, str]:
    name, sep, path = text.partition('=')
    if not sep or name not in MODELS:
        raise argparse.ArgumentTypeError(f'--ckpt must be MODEL=PATH with MODEL in {", ".join(MODELS)}, got {text!r}')
    return name, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', default=DEFAULT_MODELS, help=f'comma-separated, from {", ".join(MODELS)}')
    parser.add_argument('--small', action='store_true', help='small configurations (smoke tests)')
    parser.add_argument('--size', type=parse_size, default=(64, 64), help='LR input HxW (default 64x64)')
    parser.add_argument('--frames', type=int, default=7, help='sequence length of recurrent models (default 7)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed forwards (default 1)')
    parser.add_argument('--runs', type=int, default=3, help='timed forwards, median reported (default 3)')
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1'")
    parser.add_argument('--ckpt', type=parse_ckpt, action='append', default=[], help='MODEL=PATH (repeatable)')
    parser.add_argument('--lq-root', help='test set: blurry LR clips <lq-root>/<clip>/<frame>.png')
    parser.add_argument('--gt-root', help='test set: sharp HR clips')
    parser.add_argument('--clips', type=lambda s: s.split(','), help='comma-separated clips (default all)')
    parser.add_argument('--skip-ends', type=int, default=1, help='frames left out at each clip end (default 1)')
    parser.add_argument('--out-dir', default='results/benchmark', help='output folder')
    parser.add_argument('--no-isolate', action='store_true', help='measure in this process (no CPU memory)')
    parser.add_argument('--worker-out', help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if bool(args.lq_root) != bool(args.gt_root):
        raise ValueError('--lq-root and --gt-root go together (the test set: blurry LR and sharp HR clips)')
    for option, root in (('--lq-root', args.lq_root), ('--gt-root', args.gt_root)):
        if root and not os.path.isdir(root):
            raise FileNotFoundError(f"{option}: folder '{root}' not found")
    names = [n.strip() for n in args.models.split(',') if n.strip()]
    for name in names:
        if name not in MODELS:
            raise ValueError(f'unknown model {name!r}; choose from {", ".join(MODELS)}')
        check_size(name, *args.size, args.frames)
    args.isolated_worker = args.worker_out is not None
    if args.isolated_worker:
        atomic_write_text(json.dumps(measure(names[0], args)), args.worker_out)
        return 0
    logger = get_tool_logger()
    rows = []
    for name in names:
        logger.info(f'benchmark: {name}')
        row = measure(name, args) if args.no_isolate else run_isolated(name, args, _without_models(argv))
        if 'error' in row:
            logger.error(f'benchmark: {name} failed: {row["error"]}')
        rows.append(row)
    os.makedirs(args.out_dir, exist_ok=True)
    markdown = render_markdown(rows, args)
    atomic_write_text(markdown, os.path.join(args.out_dir, 'benchmark.md'))
    atomic_write_text(json.dumps(rows, indent=2), os.path.join(args.out_dir, 'benchmark.json'))
    title = f'LR {args.size[0]}x{args.size[1]} x{SCALE}, {resolve_device(args.device)}, per output frame'
    title += ', small variants (--small)' if args.small else ', published configurations'
    render_plot(rows, os.path.join(args.out_dir, 'benchmark.png'), title)
    logger.info('\n' + markdown)
    return 1 if any('error' in r for r in rows) else 0


def _without_models(argv: list[str]) -> list[str]:
    """The command line minus ``--models`` (each worker gets its own)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == '--models':
            skip = True
        elif not arg.startswith('--models='):
            out.append(arg)
    return out


if __name__ == '__main__':
    main_entry(main)
