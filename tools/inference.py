"""Restore a video with FMA-Net: a folder of frames or a video file in, a folder of PNGs or a video file out.

Examples:
    python tools/inference.py -i datasets/REDS/val_blur_bicubic/X4/000 -o results/000 --ckpt FMANet_REDS.pth
    python tools/inference.py -i blurry.mp4 -o restored.mp4 --ckpt FMANet_REDS.pth --tile 256 --fp16
    python tools/inference.py -i long.mov -o part.mkv --ckpt my.pth --start 12.5 --end 20 --codec libx265
    python tools/inference.py -i clip/ -o out/ --ckpt my.pth -opt options/test_fmanet_folder.yml --device cpu

Every input frame gets an output frame: the temporal window is edge-padded (the first/last frame repeated) at
the ends. The output is a video when ``-o`` ends with a video extension (.mp4, .m4v, .mov, .mkv, .avi), encoded
through PyAV (FFmpeg) with H.264 (``--codec`` picks another encoder) at the input's frame rate, with the input
video's audio copied through unchanged (``--no-audio`` drops it); else a folder of PNGs named after the input
frames (``%08d`` for video input). Decoding and encoding stream frame by frame: memory does not grow with the
length of the video. ``--start``/``--end`` (seconds) restore part of a video (its audio is cut to match).
The model configuration comes from the ``network_g`` section of ``-opt`` (with its ``model_color`` and
``scale``), else FMANet defaults.
``--tile`` splits frames into overlapping LR tiles (a 1280x720 LR input needs tiling on a 16 GB GPU, e.g.
``--tile 256 --tile-overlap 32``); see ``fmanet_plugin.utils.tiling.tiled_forward``.
Checkpoints: plugin ``{'params'|'params_ema': ...}`` or a released checkpoint converted with
``tools/convert_official_ckpt.py`` (``--model-color bgr`` if it was converted without ``--rgb``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import fmanet_plugin  # noqa: F401  (must precede basicsr: compat shim, registries)
from fmanet_plugin.data.vsrdb_windows import iter_windows
from fmanet_plugin.utils.atomic_io import atomic_imwrite
from fmanet_plugin.utils.checkpoint import load_weights
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.frame_io import FrameSource
from fmanet_plugin.utils.restorer import COLOR_ORDERS, CentreFrameRestorer
from fmanet_plugin.utils.runtime import build_network_from_opt, get_tool_logger, resolve_device
from fmanet_plugin.utils.threads import set_num_threads
from fmanet_plugin.utils.video_io import VIDEO_EXTENSIONS, VideoWriter, is_video_path

import numpy as np
import torch
import yaml
from basicsr.utils import tensor2img
from basicsr.utils.options import ordered_yaml
from tqdm import tqdm


class FrameSink:
    """Writes frames to a folder of PNGs (atomically, one by one) or to a video file (renamed into place at close).

    Args:
        path (str): Output folder, or a file with a video extension (see ``VIDEO_EXTENSIONS``).
        fps (Fraction | float): Frame rate of a video output.
        source (FrameSource | None): The input; a video input's audio (same time range) and colour
            description are carried over to a video output. Default: None.
        codec (str | None): FFmpeg encoder of a video output (default H.264). Default: None.
        crf (int | None): Quality of libx264/libx265 output. Default: 18.
    """

    def __init__(self, path: str, fps, source=None, codec: str | None = None, crf: int | None = 18) -> None:
        self.path = Path(path)
        self.writer = None
        if is_video_path(self.path):
            video = source.video if source is not None else None
            self.writer = VideoWriter(
                self.path,
                fps,
                codec=codec,
                crf=crf,
                audio_from=video.path if video is not None else None,
                audio_start=video.start if video is not None else 0.0,
                audio_end=video.end if video is not None else None,
                color=video.info if video is not None else None,
            )
        else:
            if self.path.suffix:
                raise ValueError(f'output {path}: not a video extension ({", ".join(VIDEO_EXTENSIONS)}) nor a folder')
            self.path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, frame: np.ndarray) -> None:
        if self.writer is None:
            atomic_imwrite(frame, str(self.path / f'{name}.png'))
        else:
            self.writer.write(frame)

    def close(self, success: bool) -> None:
        """Finish the video: rename it into place if ``success``, else delete the partial file."""
        if self.writer is not None:
            self.writer.close(success)


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
    parser.add_argument('--start', type=float, help='video input: first time to restore, in seconds')
    parser.add_argument('--end', type=float, help='video input: time to stop at (exclusive), in seconds')
    parser.add_argument('--codec', help='FFmpeg encoder of a video output (default libx264, H.264)')
    parser.add_argument('--crf', type=int, default=18, help='libx264/libx265 quality, lower is better (default 18)')
    parser.add_argument('--no-audio', action='store_true', help="do not copy the input video's audio")
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
    source = FrameSource(args.input, args.start, args.end)
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
    sink = FrameSink(
        args.output,
        args.fps or source.fps or 25.0,
        source=None if args.no_audio else source,
        codec=args.codec,
        crf=args.crf,
    )
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
    main_entry(main)
