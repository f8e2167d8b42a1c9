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
* IconVSR runs (``--checkpoints``): the Variant column says whether the keyframe EDVR feature extractor started
  from a trained EDVR (``EDVR extractor pretrained (<edvr_path>)``, Iterations ``N + EDVR extractor``) or from
  random weights (``EDVR extractor random init``).
* Quality (``--lq-root``/``--gt-root``; models without a checkpoint other than Bicubic are skipped): every frame
  of every clip is restored, the first/last ``--skip-ends`` frames of each clip are left out for all models;
  RGB PSNR and SSIM with a 4-pixel border, tOF over consecutive kept frames (RGB checkpoints expected).

Output in ``--out-dir``: ``benchmark.md`` (table), ``benchmark.json`` and ``benchmark.png`` (scatter of latency
against PSNR when every model has one, else against MACs).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from unittest import mock

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.metrics.benchmark_table import render_csv, render_markdown
from fmanet_plugin.metrics.clip_scoring import ClipRestorer, open_test_set, score_test_set, test_sets
from fmanet_plugin.metrics.model_cost import measure_cost
from fmanet_plugin.metrics.pareto_plot import render_plot
from fmanet_plugin.utils.atomic_io import atomic_write_text
from fmanet_plugin.utils.checkpoint import load_weights
from fmanet_plugin.utils.cli import parse_size
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.run_info import (
    keyframe_extractor_note,
    latest_checkpoint,
    read_run_options,
    training_budget,
)
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
    small_arch: str | None = None  # arch of --small (the SmallFrame* archs run below SpyNet's 64 x 64)


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
    'BasicVSR': ModelSpec(
        'BasicVSR',
        'recurrent',
        dict(num_feat=64, num_block=30),
        dict(num_feat=16, num_block=1),
        small_arch='SmallFrameBasicVSR',
    ),
    'IconVSR': ModelSpec(
        'IconVSR',
        'recurrent',
        dict(num_feat=64, num_block=30, keyframe_stride=5, temporal_padding=2),
        dict(num_feat=16, num_block=1, keyframe_stride=5, temporal_padding=2),
        small_arch='SmallFrameIconVSR',
    ),
    'BasicVSRPlusPlus': ModelSpec(
        'BasicVSRPlusPlus',
        'recurrent',
        dict(mid_channels=64, num_blocks=7),
        dict(mid_channels=16, num_blocks=1),
        cuda_alignment=True,
        small_arch='SmallFrameBasicVSRPlusPlus',
    ),
    'BasicVSRPlusPlus_noalign': ModelSpec(
        'BasicVSRPlusPlus',
        'recurrent',
        dict(mid_channels=64, num_blocks=7),
        dict(mid_channels=16, num_blocks=1),
        cuda_alignment=False,
        small_arch='SmallFrameBasicVSRPlusPlus',
    ),
    'Bicubic': ModelSpec(None, 'window', window=1),
}
DEFAULT_MODELS = 'FMANet,EDVR,BasicVSR,IconVSR,BasicVSRPlusPlus,Bicubic'


@dataclass
class RunEntry:
    """A trained run to benchmark: table name, its option file, its checkpoint."""

    name: str
    opt_path: str
    ckpt: str


def parse_run(text: str) -> RunEntry:
    """``NAME=OPT.yml[:CKPT]``; without ``CKPT`` the run's ``experiments/<name>/models/net_g_latest.pth``."""
    name, sep, rest = text.partition('=')
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f'--checkpoints entries are NAME=OPTIONS.yml[:CHECKPOINT], got {text!r}')
    opt_path, _, ckpt = rest.partition(':')
    return RunEntry(name, opt_path, ckpt or latest_checkpoint(read_run_options(opt_path)))


class Bicubic(torch.nn.Module):
    """Bicubic x4 upsampling of the centre frame of a (b, t, c, h, w) window (no parameters)."""

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lq[:, lq.shape[1] // 2], scale_factor=SCALE, mode='bicubic', align_corners=False)


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
    opt = {'type': (spec.small_arch or spec.arch) if small else spec.arch, **(spec.small if small else spec.full)}
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
    if small and spec.small_arch:
        text += f' ({spec.small_arch})'
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


def check_size(name: str, height: int, width: int, frames: int, small: bool = False) -> None:
    """Raise a ValueError when a model cannot run at this LR size / sequence length."""
    spec = MODELS[name]
    if spec.arch == 'EDVR' and (height % 4 or width % 4):
        raise ValueError(f'EDVR needs an LR size divisible by 4 (3-level pyramid), got {height}x{width}')
    if spec.small_arch and not small and min(height, width) < 64:
        raise ValueError(
            f'{name} needs an LR size of at least 64x64 (SpyNet), got {height}x{width}; '
            f'--small uses {spec.small_arch}, which runs below it'
        )
    if spec.arch == 'IconVSR' and frames < 3:
        raise ValueError(f'IconVSR needs at least 3 frames (temporal reflection padding), got {frames}')


def measure(name: str, args: argparse.Namespace) -> dict:
    """Build one built-in model and measure it (see the module docstring); returns one table row as a dict."""
    device = resolve_device(args.device)
    height, width = args.size
    check_size(name, height, width, args.frames, args.small)
    spec = MODELS[name]
    torch.manual_seed(0)
    num_in = spec.window if spec.kind == 'window' else args.frames
    lq = torch.rand(1, num_in, 3, height, width, device=device)
    reset_peak_rss()
    rss_before = rss_kb('VmRSS')
    model = build_model(name, args.small).to(device).eval()
    row = {'model': name, 'variant': variant(name, args.small, args.frames, model), 'device': str(device)}
    row.update(measure_cost(model, make_forward(name, model), lq, device, *cost_settings(args, rss_before)))
    ckpt = dict(args.ckpt).get(name)
    if args.test_set is not None and (ckpt or spec.arch is None):
        if ckpt:
            load_weights(model, ckpt)
        if spec.arch is None:
            restorer = lambda clip: model(clip.unsqueeze(1)).cpu()  # noqa: E731  (each frame alone)
        else:
            restorer = ClipRestorer(model, SCALE, chunk=args.chunk, overlap=args.overlap)
        row.update(evaluate_quality(restorer, args, device))
    return row


def cost_settings(args: argparse.Namespace, rss_before: int) -> tuple[int, int, int | None]:
    """``measure_cost``'s warmup, runs and RSS baseline (CPU peak memory only in an isolated worker)."""
    return args.warmup, args.runs, (rss_before if args.isolated_worker else None)


def measure_run(entry: RunEntry, args: argparse.Namespace) -> dict:
    """Measure a trained run: its option file's network with its checkpoint; cost, quality and training budget."""
    device = resolve_device(args.device)
    opt = read_run_options(entry.opt_path)
    if opt['network_g'].get('stage', 2) == 1:
        raise ValueError(f'{entry.opt_path}: network_g.stage is 1 (Net_D only, no restored frame)')
    reset_peak_rss()
    rss_before = rss_kb('VmRSS')
    model = build_network_from_opt(opt['network_g'])
    load_weights(model, entry.ckpt)
    model = model.to(device).eval()
    restorer = ClipRestorer(model, int(opt.get('scale', SCALE)), chunk=args.chunk, overlap=args.overlap)
    torch.manual_seed(0)
    height, width = args.size
    lq = torch.rand(1, restorer.num_frame or args.frames, 3, height, width, device=device)
    kwargs = {'outputs': ('output',)} if 'outputs' in inspect.signature(model.forward).parameters else {}

    def forward(clip: torch.Tensor) -> torch.Tensor:
        out = model(clip, **kwargs)
        out = out['output'] if isinstance(out, dict) else out
        return out.unsqueeze(1) if restorer.kind == 'sliding' else out

    detail = restorer.describe() if restorer.kind == 'sliding' else f'recurrent over {args.frames}'
    note = keyframe_extractor_note(opt['network_g'])  # IconVSR: pretrained or random keyframe extractor
    detail += f', {note}' if note else ''
    row = {'model': entry.name, 'variant': f'{opt["network_g"]["type"]}, {detail}', 'device': str(device)}
    row['options'], row['checkpoint'] = entry.opt_path, entry.ckpt
    row.update(measure_cost(model, forward, lq, device, *cost_settings(args, rss_before)))
    if args.test_set is not None:
        row.update(evaluate_quality(restorer, args, device))
        row['evaluation'] = restorer.describe()
    row.update(training_budget(opt))
    return row


def evaluate_quality(restorer, args: argparse.Namespace, device: torch.device) -> dict:
    """PSNR (RGB, Y) / SSIM / tOF over the test clips (``--skip-ends`` frames left out: the same for every model)."""
    evaluator = score_test_set(restorer, open_test_set(args.test_set), device)
    _, average = evaluator.summarise(args.skip_ends)
    return {
        'psnr': average['psnr_rgb'],
        'psnr_y': average['psnr_y'],
        'ssim': average['ssim'],
        'tof': None if np.isnan(average['tof']) else average['tof'],
        'eval_frames': average['frames'],
    }


def run_isolated(model: str, argv: list[str]) -> dict:
    """Measure one model (a built-in name or a ``--checkpoints`` entry) in a fresh Python process (its own peak RSS)
    and read back its JSON row."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, 'row.json')
        cmd = [sys.executable, os.path.abspath(__file__), *argv, '--worker-model', model, '--worker-out', result]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.isfile(result):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
            return {'model': model.partition('=')[0], 'error': tail[0]}
        with open(result) as f:
            return json.load(f)


def describe_device(args: argparse.Namespace) -> str:
    device = str(resolve_device(args.device))
    if device == 'cpu':
        cpu = platform.processor() or platform.machine()
        return f'CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)'
    return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else device


def describe_setup(rows: list[dict], args: argparse.Namespace) -> str:
    """The paragraph above the table: input, device, timing, memory and quality protocol, load averages."""
    device = str(resolve_device(args.device))
    if device.startswith('cuda'):
        memory = 'CUDA max allocated'
    else:
        memory = 'not measured (--no-isolate)' if args.no_isolate else 'increase of peak RSS, own subprocess'
    loads = ', '.join(f'{r["model"]} {r["load_average"]:.1f}' for r in rows if 'load_average' in r)
    quality = ''
    if args.test_set is not None:
        quality = (
            f' Quality on {args.test_set["name"]} ({args.test_set["dataroot_lq"]}): first/last {args.skip_ends} '
            f'frames of each clip left out for every model; PSNR/SSIM border 4.'
        )
    return (
        f'Input: LR {args.size[0]}x{args.size[1]}, x{SCALE}; recurrent models over {args.frames} frames. '
        f'Device: {describe_device(args)}; torch {torch.__version__}. Latency: median of {args.runs} after '
        f'{args.warmup} warm-up. Peak memory: {memory}. Per output frame.{quality}'
        + (f' 1-min load average when each model started: {loads}.' if loads else '')
    )


def parse_ckpt(text: str) -> tuple[str, str]:
    name, sep, path = text.partition('=')
    if not sep or name not in MODELS:
        raise argparse.ArgumentTypeError(f'--ckpt must be MODEL=PATH with MODEL in {", ".join(MODELS)}, got {text!r}')
    return name, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', default=None, help=f'comma-separated, from {", ".join(MODELS)} (default: '
                        f'{DEFAULT_MODELS} without -opt/--checkpoints, else none)')  # fmt: skip
    parser.add_argument('-opt', help="a run's option file: its test set (datasets.val) and, without --checkpoints, "
                        'its network with --run-ckpt / its latest checkpoint')  # fmt: skip
    parser.add_argument('--run-ckpt', help='checkpoint of the -opt run (default: its net_g_latest.pth)')
    parser.add_argument('--checkpoints', type=parse_run, nargs='+', default=[], action='extend',
                        help='trained runs NAME=OPTIONS.yml[:CHECKPOINT] (default: the run\'s latest)')  # fmt: skip
    parser.add_argument('--small', action='store_true', help='small configurations (smoke tests)')
    parser.add_argument('--size', type=parse_size, help="LR input HxW (default: the test set's, else 64x64)")
    parser.add_argument('--frames', type=int, default=7, help='sequence length of recurrent models (default 7)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed forwards (default 1)')
    parser.add_argument('--runs', type=int, default=3, help='timed forwards, median reported (default 3)')
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1'")
    parser.add_argument('--ckpt', type=parse_ckpt, action='append', default=[], help='MODEL=PATH (repeatable)')
    parser.add_argument('--lq-root', help='test set: blurry LR clips <lq-root>/<clip>/<frame>.png')
    parser.add_argument('--gt-root', help='test set: sharp HR clips')
    parser.add_argument('--clips', type=lambda s: s.split(','), help='comma-separated clips (default all)')
    parser.add_argument('--skip-ends', type=int, default=1, help='frames left out at each clip end (default 1)')
    parser.add_argument('--chunk', type=int, help='recurrent models: kept frames per piece (default whole clips)')
    parser.add_argument('--overlap', type=int, default=0, help='recurrent models: context frames per side')
    parser.add_argument('--out-dir', default='results/benchmark', help='output folder')
    parser.add_argument('--no-isolate', action='store_true', help='measure in this process (no CPU memory)')
    parser.add_argument('--worker-model', help=argparse.SUPPRESS)
    parser.add_argument('--worker-out', help=argparse.SUPPRESS)
    return parser


def resolve_inputs(args: argparse.Namespace) -> None:
    """The runs, the test set (``--lq-root``/``--gt-root``, else ``-opt``'s, else the first run's) and the size."""
    if args.opt and not args.checkpoints:
        opt = read_run_options(args.opt)
        args.checkpoints = [RunEntry(opt['name'], args.opt, args.run_ckpt or latest_checkpoint(opt))]
    args.test_set = None
    if args.lq_root and args.gt_root:
        args.test_set = {'name': 'benchmark', 'dataroot_lq': args.lq_root, 'dataroot_gt': args.gt_root}
        if args.clips:
            args.test_set['clips'] = args.clips
    elif args.opt or args.checkpoints:
        source = args.opt or args.checkpoints[0].opt_path
        args.test_set = next(iter(test_sets(read_run_options(source), source).values()))
    if args.size is None:
        args.size = (64, 64)
        if args.test_set is not None:
            test_set = open_test_set(args.test_set)
            clip, stems = next(iter(test_set.clips.items()))
            args.size = tuple(test_set.reader.image('lq', clip, stems[0]).shape[:2])


def plot_title(args: argparse.Namespace) -> str:
    title = f'PSNR vs cost per output frame: LR {args.size[0]}x{args.size[1]} x{SCALE}, {describe_device(args)}'
    if args.small:
        title += '\nbuilt-in models: small variants (--small), not the published sizes'
    if args.checkpoints:
        names = [osp.basename(r.opt_path) for r in args.checkpoints]
        demo = all(n.startswith('demo') for n in names)
        title += '\n' + ('demo-size variants (options/**/demo_*.yml), not the published sizes' if demo
                          else 'models as configured by their option files')  # fmt: skip
    if args.test_set is not None:
        title += f'; PSNR on {args.test_set["name"]}'
    return title


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if bool(args.lq_root) != bool(args.gt_root):
        raise ValueError('--lq-root and --gt-root go together (the test set: blurry LR and sharp HR clips)')
    for option, root in (('--lq-root', args.lq_root), ('--gt-root', args.gt_root)):
        if root and not os.path.isdir(root):
            raise FileNotFoundError(f"{option}: folder '{root}' not found")
    resolve_inputs(args)
    default_models = '' if (args.checkpoints or args.opt) else DEFAULT_MODELS
    names = [n.strip() for n in (args.models if args.models is not None else default_models).split(',') if n.strip()]
    for name in names:
        if name not in MODELS:
            raise ValueError(f'unknown model {name!r}; choose from {", ".join(MODELS)}')
        check_size(name, *args.size, args.frames, args.small)
    args.isolated_worker = args.worker_out is not None
    if args.isolated_worker:
        model = args.worker_model
        row = measure_run(parse_run(model), args) if '=' in model else measure(model, args)
        atomic_write_text(json.dumps(row), args.worker_out)
        return 0
    logger = get_tool_logger()
    specs = names + [f'{r.name}={r.opt_path}:{r.ckpt}' for r in args.checkpoints]
    rows = []
    for spec in specs:
        logger.info(f'benchmark: {spec}')
        if args.no_isolate:
            row = measure_run(parse_run(spec), args) if '=' in spec else measure(spec, args)
        else:
            row = run_isolated(spec, argv)
        if 'error' in row:
            logger.error(f'benchmark: {spec} failed: {row["error"]}')
        rows.append(row)
    os.makedirs(args.out_dir, exist_ok=True)
    markdown = render_markdown(rows, describe_setup(rows, args))
    atomic_write_text(markdown, os.path.join(args.out_dir, 'benchmark.md'))
    atomic_write_text(render_csv(rows), os.path.join(args.out_dir, 'benchmark.csv'))
    atomic_write_text(json.dumps(rows, indent=2), os.path.join(args.out_dir, 'benchmark.json'))
    render_plot(rows, os.path.join(args.out_dir, 'benchmark.png'), plot_title(args))
    logger.info('\n' + markdown)
    return 1 if any('error' in r for r in rows) else 0


if __name__ == '__main__':
    main_entry(main)
