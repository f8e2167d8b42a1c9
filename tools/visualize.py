"""Look inside FMA-Net for one frame: image flows and occlusion masks, degradation / restoration kernels, and an
input / bicubic / output / GT strip.

Examples:
    python tools/visualize.py -i datasets/REDS/train_blur_bicubic/X4/000 --gt datasets/REDS/train_sharp/000 \\
        --frame 50 --roi 60,120,64,64 --pixels 32,32 10,50 --ckpt FMANet_REDS.pth -o results/vis_000_50
    python tools/visualize.py -i clip.mp4 --frame 3 --ckpt my.pth -opt options/test_fmanet_folder.yml -o vis/

Figures (PNG, written atomically to ``-o``), captured with forward hooks (the model is not modified):

* ``flows.png``: per frame of the window, the image flow (colour wheel, ``torchvision.utils.flow_to_image``,
  normalised by the largest flow of each network) and occlusion mask (``sigmoid`` of the mask logit) of Net_D
  (``net_d.image_flow_head``) and Net_R (``net_r.image_flow_refine``);
* ``kernels_d.png``: degradation kernels ``K_D`` (``net_d.kernel_head``; softmax over the ``t * k_d^2`` taps) at
  each ``--pixels`` position, one ``k_d x k_d`` map per frame;
* ``kernels_r.png``: restoration kernels ``K_R`` (``net_r.kernel_head``; normalised as in FGDF upsampling, taps of
  each sub-pixel sum to 1) at each position: per frame an ``s x s`` mosaic of the sub-pixel ``k_r x k_r`` kernels;
* ``strip.png``: the ROI of the centre input (nearest x4, positions marked), bicubic x4, output and GT, each
  under a label.

``--roi y,x,h,w`` (LR pixels) crops the input before the model runs (keeps CPU runs short); ``--pixels`` are
``y,x`` positions inside the ROI (default: its centre).
"""

from __future__ import annotations

import argparse
import inspect
import io
from pathlib import Path

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.ops import normalize_restoration_kernels
from fmanet_plugin.utils.atomic_io import atomic_imwrite, atomic_write_bytes
from fmanet_plugin.utils.checkpoint import load_weights
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.frame_io import FrameSource
from fmanet_plugin.utils.restorer import COLOR_ORDERS, CentreFrameRestorer
from fmanet_plugin.utils.runtime import build_network_from_opt, get_tool_logger, resolve_device

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from basicsr.data.data_util import generate_frame_indices
from basicsr.utils import tensor2img
from basicsr.utils.options import ordered_yaml
from torchvision.utils import flow_to_image

KD_TITLE = 'Net_D degradation kernels K_D (softmax over all frames x k_d x k_d taps)'
KR_TITLE = (
    'Net_R restoration kernels K_R: per frame the s x s sub-pixel k_r x k_r kernels\n'
    '(the taps of each sub-pixel sum to 1 over all frames)'
)
HOOKED = {
    'flow_d': 'net_d.image_flow_head',
    'flow_r': 'net_r.image_flow_refine',
    'kernel_d': 'net_d.kernel_head',
    'kernel_r': 'net_r.kernel_head',
}


def capture_internals(model: torch.nn.Module, run) -> dict[str, torch.Tensor]:
    """Run ``run()`` with forward hooks on the sub-modules of ``HOOKED``; returns their (b, ch, t, h, w) outputs."""
    captured, handles = {}, []
    modules = dict(model.named_modules())
    for key, name in HOOKED.items():
        if name in modules:

            def hook(_module, _inputs, output, key=key):
                captured[key] = output.detach().float().cpu()

            handles.append(modules[name].register_forward_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format='png')
    plt.close(fig)
    return buffer.getvalue()


def plot_flows(captured: dict[str, torch.Tensor]):
    """Figure: rows = frames, columns = (flow, mask) of Net_D and Net_R."""
    import matplotlib.pyplot as plt

    nets = [(key, label) for key, label in (('flow_d', 'Net_D'), ('flow_r', 'Net_R')) if key in captured]
    t = captured['flow_d'].shape[2]
    fig, axes = plt.subplots(t, 2 * len(nets), figsize=(3 * 2 * len(nets), 3 * t), squeeze=False)
    for col, (key, label) in enumerate(nets):
        flow_mask = captured[key][0]  # (3, t, h, w)
        flows = flow_mask[:2].transpose(0, 1).contiguous()  # (t, 2, h, w)
        colours = flow_to_image(flows).permute(0, 2, 3, 1).numpy()
        masks = torch.sigmoid(flow_mask[2]).numpy()
        max_norm = float(flows.norm(dim=1).max())
        for row in range(t):
            axes[row, 2 * col].imshow(colours[row])
            axes[row, 2 * col].set_title(f'{label} flow, frame {row} (max {max_norm:.2f} px)', fontsize=8)
            axes[row, 2 * col + 1].imshow(masks[row], cmap='gray', vmin=0, vmax=1)
            axes[row, 2 * col + 1].set_title(f'{label} occlusion mask, frame {row}', fontsize=8)
    for ax in axes.flat:
        ax.axis('off')
    fig.tight_layout()
    return fig


def degradation_kernels(logits: torch.Tensor, pixel: tuple[int, int]) -> np.ndarray:
    """K_D at one LR pixel: softmax over all ``t * k_d^2`` taps of (1, k_d^2, t, h, w) logits -> (t, k_d, k_d)."""
    taps, t = logits.shape[1:3]
    size = int(round(taps**0.5))
    values = logits[0, :, :, pixel[0], pixel[1]].transpose(0, 1).reshape(-1)
    return torch.softmax(values, dim=0).view(t, size, size).numpy()


def restoration_kernels(raw: torch.Tensor, pixel: tuple[int, int], scale: int) -> np.ndarray:
    """K_R at one LR pixel, normalised per sub-pixel, as a (t, s*k_r, s*k_r) mosaic of the s x s sub-pixel kernels."""
    kernels = normalize_restoration_kernels(raw.transpose(1, 2), scale)  # (1, t, s*s, k*k, h, w)
    at = kernels[0, :, :, :, pixel[0], pixel[1]]
    t, size = at.shape[0], int(round(at.shape[2] ** 0.5))
    mosaic = at.view(t, scale, scale, size, size).permute(0, 1, 3, 2, 4).reshape(t, scale * size, scale * size)
    return mosaic.numpy()


def plot_kernels(
    maps: list[np.ndarray], pixels: list[tuple[int, int]], title: str, diverging: bool, block: int | None = None
):
    """Figure: rows = pixels, columns = frames; one colour scale per row; grid lines every ``block`` taps."""
    import matplotlib.pyplot as plt

    t = maps[0].shape[0]
    fig, axes = plt.subplots(len(maps), t, figsize=(3 * t + 1, 3 * len(maps) + 0.6), squeeze=False)
    fig.suptitle(title, fontsize=10)
    for row, (kernel, pixel) in enumerate(zip(maps, pixels)):
        limit = float(np.abs(kernel).max())
        for col in range(t):
            if diverging:
                image = axes[row, col].imshow(kernel[col], cmap='RdBu_r', vmin=-limit, vmax=limit)
            else:
                image = axes[row, col].imshow(kernel[col], cmap='viridis', vmin=0, vmax=limit)
            axes[row, col].set_title(f'frame {col}', fontsize=9)
            if col == 0:  # the row's LR pixel, left of its first panel (axes are off, so no ylabel)
                axes[row, col].text(
                    -0.06,
                    0.5,
                    f'LR pixel y={pixel[0]}, x={pixel[1]}',
                    transform=axes[row, col].transAxes,
                    rotation=90,
                    ha='right',
                    va='center',
                    fontsize=9,
                )
            for edge in range(block or 0, kernel.shape[-1], block or 1):
                axes[row, col].axhline(edge - 0.5, color='k', linewidth=0.8)
                axes[row, col].axvline(edge - 0.5, color='k', linewidth=0.8)
            axes[row, col].axis('off')
        fig.colorbar(image, ax=list(axes[row]), shrink=0.8)
    return fig


def make_strip(lq_centre: np.ndarray, output: np.ndarray, gt: np.ndarray | None, pixels, scale: int) -> np.ndarray:
    """Side by side (uint8 BGR): nearest-upsampled input with the kernel positions marked, bicubic, output, GT."""
    h, w = lq_centre.shape[:2]
    nearest = cv2.resize(lq_centre, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    for y, x in pixels:
        centre = (x * scale + scale // 2, y * scale + scale // 2)
        cv2.drawMarker(nearest, centre, (0, 0, 255), cv2.MARKER_CROSS, 3 * scale, 1)
    lq_tensor = torch.from_numpy(lq_centre).permute(2, 0, 1)[None].float() / 255
    bicubic = F.interpolate(lq_tensor, scale_factor=scale, mode='bicubic', align_corners=False)
    bicubic = tensor2img(bicubic[0], rgb2bgr=False)
    panels = [nearest, bicubic, output] + ([gt] if gt is not None else [])
    labels = [
        (f'input, nearest x{scale} (+ kernel pixels)', 'input'),
        (f'bicubic x{scale}', 'bicubic'),
        ('FMA-Net output', 'FMA-Net'),
        ('ground truth', 'GT'),
    ]
    panels = [np.concatenate([_label_bar(label, panel.shape[1]), panel]) for panel, label in zip(panels, labels)]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)


def _label_bar(labels: tuple[str, ...], width: int, height: int = 20) -> np.ndarray:
    """White (height, width, 3) bar with the first of ``labels`` that fits the width (the last one shrunk)."""
    bar = np.full((height, width, 3), 255, np.uint8)
    for label in labels:
        text_width = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
        if text_width <= width - 6:
            break
    font_scale = min(0.45, 0.45 * (width - 6) / max(text_width, 1))
    cv2.putText(bar, label, (3, height - 6), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def parse_pair(text: str, count: int, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(','))
    except ValueError:
        values = ()
    if len(values) != count:
        raise argparse.ArgumentTypeError(f'{what} must be {count} comma-separated integers, got {text!r}')
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='blurry LR clip: folder of frames or video file')
    parser.add_argument('--gt', help='sharp HR frames (folder or video), same order; optional')
    parser.add_argument('--frame', type=int, help='0-based index of the centre frame (default: middle)')
    parser.add_argument('--ckpt', required=True, help='checkpoint ({"params": ...} or converted released)')
    parser.add_argument('-opt', help='YAML with network_g (and model_color); default FMANet()')
    parser.add_argument('--model-color', choices=COLOR_ORDERS, help='channel order of the checkpoint')
    parser.add_argument('--roi', type=lambda s: parse_pair(s, 4, '--roi'), help='LR crop y,x,h,w (default all)')
    parser.add_argument('--pixels', nargs='+', type=lambda s: parse_pair(s, 2, '--pixels'), help='y,x in the ROI')
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda'")
    parser.add_argument('-o', '--out-dir', required=True, help='output folder')
    return parser.parse_args(argv)


def read_window(path: str, centre: int | None, num_seq: int) -> tuple[list[np.ndarray], int, int]:
    """The edge-padded window of uint8 BGR frames around ``centre`` (default the middle), the centre and count."""
    frames = [frame for _, frame in FrameSource(path)]
    centre = len(frames) // 2 if centre is None else centre
    if not 0 <= centre < len(frames):
        raise ValueError(f'--frame {centre} is outside the {len(frames)} frames of {path}')
    return (
        [frames[i] for i in generate_frame_indices(centre, len(frames), num_seq, padding='replicate')],
        centre,
        len(frames),
    )


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use('Agg')
    args = parse_args(argv)
    logger = get_tool_logger()
    opt = {'network_g': {'type': 'FMANet'}, 'model_color': 'rgb', 'scale': 4}
    if args.opt:
        with open(args.opt) as f:
            opt.update(yaml.load(f, Loader=ordered_yaml()[0]))
    network_opt = dict(opt['network_g'])
    if network_opt['type'] == 'FMANet' and 'impl' in inspect.signature(FMANet.__init__).parameters:
        network_opt['impl'] = 'reference'  # the module-by-module forward, so that the hooks fire
    model = build_network_from_opt(network_opt)
    load_weights(model, args.ckpt)
    if getattr(model, 'net_r', None) is None:
        raise ValueError(f'{args.ckpt}: visualize needs a stage-2 FMANet (Net_D and Net_R)')
    device = resolve_device(args.device)
    scale, num_seq = int(getattr(model, 'scale', opt.get('scale', 4))), int(getattr(model, 'num_seq', 3))
    window, centre, _ = read_window(args.input, args.frame, num_seq)
    h, w = window[0].shape[:2]
    y0, x0, rh, rw = args.roi or (0, 0, h, w)
    if y0 < 0 or x0 < 0 or rh < 1 or rw < 1 or y0 + rh > h or x0 + rw > w:
        raise ValueError(f'--roi {args.roi} does not fit the {h}x{w} LR frames')
    window = [f[y0 : y0 + rh, x0 : x0 + rw] for f in window]
    pixels = [tuple(p) for p in (args.pixels or [(rh // 2, rw // 2)])]
    for y, x in pixels:
        if not (0 <= y < rh and 0 <= x < rw):
            raise ValueError(f'--pixels {y},{x} is outside the {rh}x{rw} ROI')

    restorer = CentreFrameRestorer(
        model.to(device), scale, model_color=args.model_color or opt.get('model_color', 'rgb')
    )
    lq = torch.from_numpy(np.stack(window)).permute(0, 3, 1, 2)[None].float() / 255
    outputs = {}
    captured = capture_internals(model, lambda: outputs.setdefault('out', restorer(lq, input_color='bgr')))
    missing = [HOOKED[k] for k in ('flow_d', 'flow_r', 'kernel_d', 'kernel_r') if k not in captured]
    if missing:
        raise RuntimeError(f'forward hooks on {missing} did not fire: the model does not call these sub-modules')
    output = tensor2img(outputs['out'][0].cpu(), rgb2bgr=False)
    gt = None
    if args.gt:
        gt_frames = [frame for _, frame in FrameSource(args.gt)]
        gt = gt_frames[centre][y0 * scale : (y0 + rh) * scale, x0 * scale : (x0 + rw) * scale]
        if gt.shape != output.shape:
            raise ValueError(f'--gt frame {centre} crop has shape {gt.shape}, the output {output.shape}')

    out_dir = Path(args.out_dir)
    atomic_write_bytes(_figure_png(plot_flows(captured)), str(out_dir / 'flows.png'))
    kd = [degradation_kernels(captured['kernel_d'], p) for p in pixels]
    atomic_write_bytes(_figure_png(plot_kernels(kd, pixels, KD_TITLE, False)), str(out_dir / 'kernels_d.png'))
    if 'kernel_r' in captured:
        kr = [restoration_kernels(captured['kernel_r'], p, scale) for p in pixels]
        figure = plot_kernels(kr, pixels, KR_TITLE, True, block=kr[0].shape[-1] // scale)
        atomic_write_bytes(_figure_png(figure), str(out_dir / 'kernels_r.png'))
    atomic_imwrite(make_strip(window[num_seq // 2], output, gt, pixels, scale), str(out_dir / 'strip.png'))
    logger.info(f'visualize: frame {centre} of {args.input} -> {out_dir}')
    return 0


if __name__ == '__main__':
    main_entry(main)
