"""Restore a video with FMA-Net: a folder of frames or a video file in, a folder of PNGs or a video file out.

Examples:
    python tools/inference.py -i datasets/REDS/val_blur_bicubic/X4/000 -o results/000 --ckpt FMANet_REDS.pth
    python tools/inference.py -i blurry.mp4 -o restored.mp4 --ckpt FMANet_REDS.pth --tile 256 --fp16
    python tools/inference.py -i clip/ -o out/ --ckpt my.pth -opt options/test_fmanet_folder.yml --device cpu

Every input frame gets an output frame: the temporal window is edge-padded (the first/last frame repeated) at
the ends. The output is a video when ``-o`` ends with a video extension (.mp4, .m4v, .mov: mp4v; .avi, .mkv:
MJPG), else a folder of PNGs named after the input frames (``%08d`` for video input). The model configuration
comes from the ``network_g`` section of ``-opt`` (with its ``model_color`` and ``scale``), else FMANet defaults.
``--tile`` splits frames into overlapping LR tiles (a 1280x720 LR input needs tiling on a 16 GB GPU, e.g.
``--tile 256 --tile-overlap 32``); see ``fmanet_plugin.utils.inference_util.tiled_forward``.
Checkpoints: plugin ``{'params'|'params_ema': ...}`` or a released checkpoint converted with
``tools/convert_official_ckpt.py`` (``--model-color bgr`` if it was converted without ``--rgb``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.utils.inference_util import (
    COLOR_ORDERS,
    CentreFrameRestorer,
    FrameSource,
    atomic_imwrite,
    build_network_from_opt,
    get_tool_logger,
    iter_windows,
    load_weights,
    publish_temp_file,
    resolve_device,
)
from fmanet_plugin.utils.threads import set_num_threads

import cv2
import numpy as np
import torch
import yaml
from basicsr.utils import tensor2img
from basicsr.utils.options import ordered_yaml
from tqdm import tqdm

VIDEO_CODECS = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG'}


class FrameSink:
    """Writes frames to a folder of PNGs (atomically, one by one) or to a video file (renamed into place at close).

    Args:
        path (str): Output folder, or a file with a video extension (see ``VIDEO_CODECS``).
        fps (float): Frame rate of a video output.
    """

    def __init__(self, path: str, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self.is_video = self.path.suffix.lower() in VIDEO_CODECS
        self.writer = None
        self.tmp = None
        if not self.is_video:
            if self.path.suffix:
                raise ValueError(f'output {path}: not a video extension ({", ".join(VIDEO_CODECS)}) nor a folder')
            self.path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, frame: np.ndarray) -> None:
        if not self.is_video:
            atomic_imwrite(frame, str(self.path / f'{name}.png'))
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix='.tmp_', suffix=self.path.suffix)
            os.close(fd)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(self.tmp, fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise ValueError(f'OpenCV cannot write {self.path.suffix} video ({VIDEO_CODECS[self.path.suffix]})')
        self.writer.write(frame)

    def close(self, success: bool) -> None:
        """Finish the video: rename it into place if ``success``, else delete the partial file."""
        if self.writer is not None:
            self.writer.release()
        if self.tmp is not None:
            if success:
                publish_temp_file(self.tmp, self.path)
            elif os.path.exists(self.tmp):
                os.remove(self.tmp)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='folder of frames or a video file (blurry LR)')
    parser.add_argument('-o', '--output', required=True, help='output folder (PNGs) or video file')
    parser.add_argument('--ckpt', required=True, help='checkpoint ({"params": ...} or converted released)')
    parser.add_argument('-opt', help='YAML with network_g (and optionally model_color, scale); default FMANet()')
    parser.add_argument('--model-color', choices=COLOR_ORDERS, help='channel order of the checkpoint (default rgb)')
    parser.add_argument('--param-key', help='checkpoint entry (default params_ema, else params)')
    parser.add_argument('--tile', type=int, default=0, help='LR tile size; 0 = whole frames (default)')
    parser.add_argument('--tile-overlap', type=int, default=16, help='tile overlap in LR pixels (default 16)')
    amp = parser.add_mutually_exclusive_group()
    amp.add_argument('--fp16', action='store_const', const='fp16', dest='amp', help='float16 autocast (GPU)')
    amp.add_argument('--bf16', action='store_const', const='bf16', dest='amp', help='bfloat16 autocast (GPU)')
    parser.add_argument('--device', default='auto', help="'auto' (default), 'cpu', 'cuda', 'cuda:1'")
    parser.add_argument('--fps', type=float, help='frame rate of a video output (default: input fps or 25)')
    return parser.parse_args(argv)


def load_model_options(path: str | None) -> dict:
    """``network_g``, ``model_color`` and ``scale`` from a YAML, or FMANet defaults."""
    if path is None:
        return {'network_g': {'type': 'FMANet'}, 'model_color': 'rgb', 'scale': 4}
    if not os.path.isfile(path):
        raise FileNotFoundError(f'options file not found: {path}')
    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    if 'network_g' not in opt:
        raise ValueError(f'{path}: no network_g section')
    return {'network_g': opt['network_g'], 'model_color': opt.get('model_color', 'rgb'), 'scale': opt.get('scale', 4)}


def frame_to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 (h, w, c) frames -> (1, t, c, h, w) float32 in [0, 1], channel order unchanged."""
    stack = np.stack(frames).astype(np.float32) / 255.0
    return torch.from_numpy(stack).permute(0, 3, 1, 2).unsqueeze(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logger = get_tool_logger()
    source = FrameSource(args.input)
    opt = load_model_options(args.opt)
    device = resolve_device(args.device)
    model = build_network_from_opt(opt['network_g'])
    key = load_weights(model, args.ckpt, args.param_key)
    num_seq = int(opt['network_g'].get('num_seq', getattr(model, 'num_seq', 3)))
    restorer = CentreFrameRestorer(
        model.to(device),
        scale=int(opt['scale']),
        model_color=args.model_color or opt['model_color'],
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        amp=args.amp,
    )
    logger.info(f'{args.ckpt} [{key}] -> {opt["network_g"]["type"]} on {device}; {source.path} -> {args.output}')
    sink = FrameSink(args.output, args.fps or source.fps or 25.0)
    success = False
    written = 0
    try:
        # windows of (name, frame) pairs: the centre's name names the output
        for window in tqdm(iter_windows(source, num_seq), total=source.count, unit='frame', dynamic_ncols=True):
            if written == 0 and device.type == 'cpu':  # CPU threads for this frame size and the machine's load
                h, w = window[0][1].shape[:2]
                pixels = min(h * w, args.tile**2) if args.tile else h * w
                set_num_threads(num_seq * pixels * int(opt['network_g'].get('dim', 90)), logger)
            output = restorer(frame_to_tensor([frame for _, frame in window]), input_color='bgr')
            sink.write(window[num_seq // 2][0], tensor2img(output[0].cpu(), rgb2bgr=False))
            written += 1
        success = True
    finally:
        sink.close(success)
    logger.info(f'wrote {written} frames to {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
