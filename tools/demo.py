"""The embedded default job (``make demo``): generate the demo clips, train FMA-Net stage 1 then stage 2 on
them with ``tools/train.py``, and compare the result with bicubic upsampling on held-out footage.

The validation clips come from a photograph never used for training (``tools/make_demo_data.py``). Printed at
the end, per method (FMA-Net, bicubic of the blurry centre frame), over every frame of the validation clips:
PSNR / SSIM (RGB, border 4, as BasicSR's validation), tOF, the 4x4 phase ratio of the error (a periodic
grid artefact of an x4 upsampler raises it, see :func:`phase_error`) and the end-point error of Net_D's image
flow against the exact flow of the synthetic camera (next to the error of a zero flow). A side-by-side PNG
(blurry LR nearest-upsampled | bicubic | FMA-Net | ground truth) goes to ``results/demo/``.

CPU threads are chosen by ``fmanet_plugin.utils.threads`` in every process (set ``OMP_NUM_THREADS`` to
override). Outputs: ``datasets/demo``, ``experiments/demo_FMANet_stage*``, ``results/demo``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.metrics.tof_metric import calculate_tof
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.threads import set_num_threads

import cv2
import numpy as np
import torch
import yaml
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import get_root_logger, tensor2img

ROOT = Path(__file__).resolve().parents[1]
# basicsr's flow_warp calls torch.meshgrid without ``indexing`` (same result, a warning on every new process)
MESHGRID_WARNING = 'ignore:torch.meshgrid:UserWarning'
PHASE_RATIO_BOUND = 1.25  # no grid artefact: max/min phase error at most this (bicubic's own is 1.05-1.2)


def phase_error(outputs: list[np.ndarray], gts: list[np.ndarray], scale: int = 4, border: int = 4) -> np.ndarray:
    """Mean absolute error per output pixel phase ``(y mod scale, x mod scale)``, pooled over frames.

    Args:
        outputs, gts: Frames (h, w[, c]) of the same size, any range; ``border`` (a multiple of ``scale``)
            pixels are cropped at each edge, so the phases are those of the full frame.

    Returns:
        (scale, scale) array. Its max/min ratio is near 1 for an output without a periodic pattern of period
        ``scale``; an x4 upsampler that adds a fixed pattern on its 4x4 sub-pixel grid raises it.
    """
    if border % scale:
        raise ValueError(f'border {border} must be a multiple of scale {scale} to keep the pixel phases')
    sums = np.zeros((scale, scale))
    for out, gt in zip(outputs, gts, strict=True):
        err = np.abs(out.astype(np.float64) - gt.astype(np.float64))
        err = err.mean(axis=2) if err.ndim == 3 else err
        err = err[border : err.shape[0] - border, border : err.shape[1] - border]
        sums += [[err[y::scale, x::scale].mean() for x in range(scale)] for y in range(scale)]
    return sums / len(outputs)


def phase_ratio(phases: np.ndarray) -> float:
    """max / min of :func:`phase_error`'s table."""
    return float(phases.max() / phases.min())


def end_point_error(flow: np.ndarray, truth: np.ndarray) -> float:
    """Mean Euclidean distance between two flows (..., 2) (x, y)."""
    return float(np.linalg.norm(flow - truth, axis=-1).mean())


def bicubic_upsample(lq_centre: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic x``scale`` of (b, c, h, w) in [0, 1] (torch, a = -0.75)."""
    return torch.nn.functional.interpolate(lq_centre, scale_factor=scale, mode='bicubic', align_corners=False)


def evaluate(stage2_opt: dict, checkpoint: Path) -> tuple[dict, dict]:
    """Scores of FMA-Net and bicubic on the validation clips of ``stage2_opt``, and the frames to show.

    Returns:
        ``scores``: method -> {psnr, ssim, tof, phase_ratio} (means over frames, tOF over clips), plus
        ``flow`` -> {epe, zero_epe} for Net_D's image flow of interior frames against the exact flow;
        ``shown``: images (BGR uint8) of the middle frame of the first validation clip, and ``psnr`` -> their PSNR.
    """
    scale = int(stage2_opt['scale'])
    net = build_network(dict(stage2_opt['network_g']))
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    net.load_state_dict(state.get('params_ema', state['params']))
    net.eval()
    val_opt = dict(stage2_opt['datasets']['val'], phase='val', scale=scale)
    flow_root = Path(val_opt['meta_info_file']).parent / 'train_flow'
    dataset = build_dataset(val_opt)
    frames = defaultdict(lambda: defaultdict(list))  # method -> clip -> frames
    per_frame = defaultdict(list)  # method -> [(psnr, ssim)]
    epe, zero_epe, shown = [], [], {}
    first_clip = dataset.items[0][0]
    for sample in dataset:
        lq, gt = sample['lq'], tensor2img(sample['gt'])
        centre = lq.shape[0] // 2
        with torch.no_grad():
            out = net(lq.unsqueeze(0), outputs=('output', 'image_flow'))
        images = {
            'FMA-Net': tensor2img(out['output'].clamp(0, 1)),
            'bicubic': tensor2img(bicubic_upsample(lq[centre : centre + 1], scale).clamp(0, 1)),
        }
        for name, img in images.items():
            per_frame[name].append((calculate_psnr(img, gt, 4), calculate_ssim(img, gt, 4)))
            frames[name][sample['clip']].append(img)
        frames['gt'][sample['clip']].append(gt)
        idx, count = sample['frame_idx'], sample['num_frames']
        if centre <= idx < count - centre:  # a window without padded frames: every neighbour has an exact flow
            stems = dataset.clips[sample['clip']]
            for t in range(lq.shape[0]):
                if t != centre:
                    truth = np.load(flow_root / sample['clip'] / f'{stems[idx]}_{stems[idx + t - centre]}.npy')
                    flow = out['image_flow'][0, t].permute(1, 2, 0).numpy()
                    epe.append(end_point_error(flow, truth))
                    zero_epe.append(end_point_error(np.zeros_like(truth), truth))
        if sample['clip'] == first_clip and idx == count // 2:
            lr = tensor2img(lq[centre])
            shown = {'lr': cv2.resize(lr, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), **images}
            shown['gt'] = gt
            shown['psnr'] = {name: per_frame[name][-1][0] for name in images}
            shown['name'] = sample['key']
    scores = {}
    for name in ('FMA-Net', 'bicubic'):
        outs = [f for clip in frames[name].values() for f in clip]
        gts = [f for clip in frames['gt'].values() for f in clip]
        tofs = [calculate_tof(frames[name][clip], frames['gt'][clip]) for clip in frames[name]]
        scores[name] = {
            'psnr': float(np.mean([p for p, _ in per_frame[name]])),
            'ssim': float(np.mean([s for _, s in per_frame[name]])),
            'tof': float(np.mean(tofs)),
            'phase_ratio': phase_ratio(phase_error(outs, gts, scale)),
        }
    scores['flow'] = {'epe': float(np.mean(epe)), 'zero_epe': float(np.mean(zero_epe))}
    return scores, shown


def side_by_side(panels: list[np.ndarray], labels: list[str], bar: int = 22) -> np.ndarray:
    """Panels (h, w, 3) uint8 in a row, each under a white bar with its label, separated by 4 white pixels."""
    columns = []
    for panel, label in zip(panels, labels, strict=True):
        head = np.full((bar, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(head, label, (4, bar - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        columns += [np.concatenate([head, panel]), np.full((bar + panel.shape[0], 4, 3), 255, np.uint8)]
    return np.concatenate(columns[:-1], axis=1)


def format_table(scores: dict) -> str:
    """The final table (markdown) and the flow line."""
    rows = ['| method | PSNR (dB) | SSIM | tOF | grid: max/min phase error |', '|---|---|---|---|---|']
    for name in ('bicubic', 'FMA-Net'):
        s = scores[name]
        rows.append(f'| {name} | {s["psnr"]:.2f} | {s["ssim"]:.4f} | {s["tof"]:.3f} | {s["phase_ratio"]:.3f} |')
    flow = scores['flow']
    rows.append(
        f'\nNet_D image flow vs the exact camera flow (LR pixels, interior frames): mean end-point error '
        f'{flow["epe"]:.3f}, zero flow {flow["zero_epe"]:.3f}'
    )
    return '\n'.join(rows)


def check_targets(scores: dict) -> list[str]:
    """The demo's quality targets, each as 'met' / 'NOT MET' lines."""
    fma, bic, flow = scores['FMA-Net'], scores['bicubic'], scores['flow']
    checks = [
        (f'PSNR gain over bicubic {fma["psnr"] - bic["psnr"]:+.2f} dB (>= 1 dB)', fma['psnr'] - bic['psnr'] >= 1),
        (f'SSIM gain over bicubic {fma["ssim"] - bic["ssim"]:+.4f} (> 0)', fma['ssim'] > bic['ssim']),
        (
            f'grid statistic {fma["phase_ratio"]:.3f} (<= {PHASE_RATIO_BOUND}; bicubic {bic["phase_ratio"]:.3f})',
            fma['phase_ratio'] <= PHASE_RATIO_BOUND,
        ),
        (
            f'flow EPE {flow["epe"]:.3f} px (<= half the zero-flow EPE {flow["zero_epe"]:.3f})',
            flow['epe'] <= flow['zero_epe'] / 2,
        ),
    ]
    return [f'{"met" if ok else "NOT MET"}: {text}' for text, ok in checks]


def run(cmd: list[str]) -> float:
    """Run ``cmd`` (output streamed); returns its wall time in seconds."""
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ)
    env['PYTHONWARNINGS'] = ','.join(filter(None, [env.get('PYTHONWARNINGS'), MESHGRID_WARNING]))
    start = time.time()
    subprocess.run(cmd, check=True, env=env)
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--stage1', default=str(ROOT / 'options/demo_stage1.yml'))
    parser.add_argument('--stage2', default=str(ROOT / 'options/demo_stage2.yml'))
    parser.add_argument('--results', default='results/demo', help='folder of the side-by-side PNG')
    parser.add_argument('--skip-training', action='store_true', help='evaluate the existing stage-2 checkpoint')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore', message='torch.meshgrid', category=UserWarning)
    python, start, times = sys.executable, time.time(), {}
    stage1_opt = yaml.safe_load(Path(args.stage1).read_text())
    data = Path(stage1_opt['datasets']['train']['meta_info_file']).parent  # the clips the option files read
    if not (data / 'sources.txt').exists():  # missing, or built by an older make_demo_data.py
        times['data'] = run([python, str(ROOT / 'tools/make_demo_data.py'), '--out', str(data), '--force'])
    if not args.skip_training:
        times['stage 1'] = run([python, str(ROOT / 'tools/train.py'), '-opt', args.stage1])
        times['stage 2'] = run([python, str(ROOT / 'tools/train.py'), '-opt', args.stage2])
    stage2_opt = yaml.safe_load(Path(args.stage2).read_text())
    checkpoint = Path('experiments') / stage2_opt['name'] / 'models' / 'net_g_latest.pth'
    eval_start = time.time()
    net_opt = stage2_opt['network_g']
    set_num_threads(3 * 48 * 64 * int(net_opt.get('dim', 90)), get_root_logger())
    scores, shown = evaluate(stage2_opt, checkpoint)
    times['evaluation'] = time.time() - eval_start
    png = Path(args.results) / 'side_by_side.png'
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f'.{png.name}.tmp.png')
    labels = [
        'blurry LR input (nearest x4)',
        f'bicubic ({shown["psnr"]["bicubic"]:.2f} dB)',
        f'FMA-Net ({shown["psnr"]["FMA-Net"]:.2f} dB)',
        f'ground truth ({shown["name"]})',
    ]
    panels = side_by_side([shown[k] for k in ('lr', 'bicubic', 'FMA-Net', 'gt')], labels)
    cv2.imwrite(str(tmp), panels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    os.replace(tmp, png)
    parts = ', '.join(f'{k} {v:.0f} s' for k, v in times.items())
    print(f'\nDemo finished in {time.time() - start:.0f} s ({parts})')
    print(f'Held-out validation clips ({stage2_opt["datasets"]["val"]["meta_info_file"]}), RGB, border 4:\n')
    print(format_table(scores) + '\n')
    print('\n'.join(check_targets(scores)))
    print(f'checkpoint: {checkpoint}\nside by side: {png}')
    return 0


if __name__ == '__main__':
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    main_entry(main)
