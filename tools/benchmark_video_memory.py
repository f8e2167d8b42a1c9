"""Peak memory of tools/inference.py on a short and a long video of the same size (streaming check).

Makes two H.264 videos with an AAC track (``--short`` and ``--long`` frames of ``--lr-size``), a randomly
initialised checkpoint of the network in ``-opt`` (default: the demo network of options/demo_stage2.yml), runs
``tools/inference.py`` video -> video on each in a fresh child process and prints the child's peak resident
memory (``VmHWM``), the wall time and what the output holds (frames, frame rate, duration, audio). A streaming
pipeline has the same peak for both lengths; one that kept every frame would grow by the size of the outputs.

Example::

    python tools/benchmark_video_memory.py --short 10 --long 300 --lr-size 64x96
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmanet_plugin.utils.errors import main_entry

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import runpy, sys
from fmanet_plugin.utils.runtime import rss_kb
sys.argv = {argv!r}
try:
    runpy.run_path({tool!r}, run_name='__main__')
except SystemExit as exc:
    if exc.code:
        raise
print('VmHWM_KB', rss_kb('VmHWM'))
"""


def make_input(path: Path, frames: int, size: tuple[int, int], fps: int = 25) -> None:
    """A panning smooth texture, H.264, with a 440 Hz AAC tone."""
    from fmanet_plugin.utils.video_io import write_video_with_tone

    import cv2
    import numpy as np

    h, w = size
    texture = cv2.resize(np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8), (4 * w, 4 * h))
    frames_iter = (np.ascontiguousarray(texture[h : 2 * h, i % (3 * w) : i % (3 * w) + w]) for i in range(frames))
    write_video_with_tone(path, frames_iter, fps)


def describe(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            'frames': frames,
            'fps': float(video.average_rate),
            'duration_s': round(container.duration / av.time_base, 3),
            'audio': container.streams.audio[0].codec_context.name if container.streams.audio else None,
        }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--short', type=int, default=10, help='frames of the short video')
    parser.add_argument('--long', type=int, default=300, help='frames of the long video')
    parser.add_argument('--lr-size', default='64x96', help='input size HxW')
    parser.add_argument('-opt', default=str(ROOT / 'options' / 'demo_stage2.yml'), help='options with network_g')
    parser.add_argument('--threads', default='1', help='OMP_NUM_THREADS of the children')
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.lr_size.split('x'))

    import os

    import fmanet_plugin  # noqa: F401
    from fmanet_plugin.utils.runtime import build_network_from_opt

    import torch
    import yaml

    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        network = yaml.safe_load(Path(args.opt).read_text())['network_g']
        torch.manual_seed(0)
        torch.save({'params': build_network_from_opt(network).state_dict()}, tmp / 'net.pth')
        env = {**os.environ, 'OMP_NUM_THREADS': args.threads, 'PYTHONPATH': str(ROOT)}
        for frames in (args.short, args.long):
            source, output = tmp / f'in_{frames}.mp4', tmp / f'out_{frames}.mp4'
            make_input(source, frames, size)
            tool_argv = ['inference.py', '-i', str(source), '-o', str(output), '--ckpt', str(tmp / 'net.pth')]
            tool_argv += ['-opt', args.opt, '--device', 'cpu']
            code = CHILD.format(root=str(ROOT), argv=tool_argv, tool=str(ROOT / 'tools' / 'inference.py'))
            tic = time.perf_counter()
            run = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
            if run.returncode:
                raise RuntimeError(f'inference failed on {frames} frames:\n{run.stderr[-2000:]}')
            peak = int(run.stdout.split('VmHWM_KB')[-1].split()[0])
            report[frames] = {
                'peak_rss_mib': round(peak / 1024, 1),
                'wall_s': round(time.perf_counter() - tic, 1),
                'input': describe(source),
                'output': describe(output),
            }
            print(f'{frames:5d} frames: peak RSS {report[frames]["peak_rss_mib"]} MiB, {report[frames]["wall_s"]} s')
    short, long = report[args.short], report[args.long]
    print(json.dumps(report, indent=1))
    print(f'peak RSS {args.long} / {args.short} frames: {long["peak_rss_mib"] / short["peak_rss_mib"]:.3f}')
    return report


if __name__ == '__main__':
    main_entry(main)
