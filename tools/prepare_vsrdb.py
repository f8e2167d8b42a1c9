"""Turn sharp footage (videos or frame folders) into a VSRDB training set in the REDS layout, resumably.

Example (a 120 fps phone video, motion blur from 5 frames -> 24 fps clips of 50 frames, 720p targets)::

    python tools/prepare_vsrdb.py -i footage/*.mp4 -o datasets/own --height 720 --blur-frames 5 \\
        --raft-weights tests/data/raft-small.pth --lmdb

Layout of ``-o`` (what ``VSRDBDataset``/``VSRDBTestDataset`` and the option files expect)::

    train_sharp/<clip>/%08d.png                sharp HR targets (middle frame of each averaged group)
    train_sharp_bicubic/X4/<clip>/%08d.png     sharp LR (bicubic x4, antialiased)
    train_blur_bicubic/X4/<clip>/%08d.png      blurry LR input (linear-light average, then bicubic x4)
    train_flow/<clip>/<centre>_<neighbour>.npy RAFT flow on the sharp LR frames (--flow-radius)
    meta_info_train.txt, meta_info_val.txt     '<clip> <frames> (h,w,3)'; the last --val-clips clips are val
    clips.txt                                  source, source frames and scene of each clip
    *.lmdb                                     with --lmdb: the four streams packed (tools/create_lmdb.py)

Blur needs fast footage: averaging N frames of a 30 fps video makes ghosted copies, not smooth blur. REDS
started from 120 fps and interpolated further. ``--interpolate K`` inserts K-1 frames along RAFT flow between
consecutive frames first (K times more frames to average; costs two RAFT passes per source frame pair, on
frames shrunk to 640 px). The output frame rate is ``fps * K / group stride``.

Interrupted runs resume: finished clips are skipped, half-written clips are redone, missing flows computed.
See ``fmanet_plugin.data.vsrdb_prepare`` and ``fmanet_plugin.data.vsrdb_synthesis``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import fmanet_plugin  # noqa: F401  (basicsr compat shim before importing basicsr)
from fmanet_plugin.data.vsrdb_prepare import PrepareOptions, prepare_vsrdb, stream_dirs
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.lmdb_io import build_lmdb

from basicsr.utils import get_root_logger

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_RAFT = ROOT / 'tests' / 'data' / 'raft-small.pth'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('-i', '--inputs', nargs='+', required=True, help='sharp videos (any format FFmpeg reads) or frame folders')
    add('-o', '--out', required=True, help='dataset root')
    add('--blur-frames', type=int, default=5, help='sharp frames averaged per blurry frame (odd; default 5)')
    add('--group-stride', type=int, help='frames between group starts (default: --blur-frames, no gap)')
    add('--no-linear', dest='linear', action='store_false', help='average sRGB values instead of linear light')
    add('--interpolate', type=int, default=1, help='raise the frame rate K times along RAFT flow first (default 1)')
    add('--scale', type=int, default=4, help='downsampling factor (default 4)')
    add('--height', type=int, help='resize sharp frames to this height first (keeps the aspect ratio)')
    add('--clip-length', type=int, default=50, help='output frames per clip (default 50)')
    add('--clip-stride', type=int, help='output frames between clip starts (default: --clip-length)')
    add('--min-clip-length', type=int, default=5, help='shortest clip kept at the end of a scene (default 5)')
    add('--scene-threshold', type=float, default=27.0, help='PySceneDetect ContentDetector threshold (27)')
    add('--min-scene-len', type=int, default=15, help='shortest scene in source frames (default 15)')
    add('--start', type=float, help='videos: first time to use, in seconds')
    add('--end', type=float, help='videos: time to stop at, in seconds')
    add('--fps', type=float, help='frame rate of frame-folder inputs (default 25; metadata only)')
    add('--val-clips', type=int, default=1, help='last clips listed in meta_info_val.txt (default 1)')
    add('--flow-radius', type=int, default=1, help='RAFT flow to neighbours up to this far; 0: none (default 1)')
    add('--raft-weights', default=str(DEFAULT_RAFT), help='RAFT weights (torchvision or princeton-vl .pth)')
    add('--raft-model', choices=['auto', 'small', 'large'], default='auto', help='RAFT variant')
    add('--flow-updates', type=int, default=12, help='RAFT recurrent updates per flow (default 12)')
    add('--batch-size', type=int, default=8, help='frame pairs per RAFT call (default 8)')
    add('--device', default='cpu', help="torch device of RAFT ('cpu', 'cuda')")
    add('--lmdb', action='store_true', help='also pack the four streams into <stream>.lmdb')
    add('--overwrite', action='store_true', help='discard what -o holds from an earlier preparation')
    return parser.parse_args(argv)


def pack_lmdb(root: Path, scale: int, rebuild: bool) -> None:
    """Pack each stream into ``<stream>.lmdb`` with tools/create_lmdb.py's code (rebuilt if ``rebuild``)."""

    for key, folder in stream_dirs(scale).items():
        if not (root / folder).is_dir():
            continue
        target = root / f'{folder}.lmdb'
        if target.exists() and not rebuild:
            get_root_logger().info(f'{target} is up to date')
            continue
        build_lmdb(root / folder, target, kind='flow' if key == 'flow' else 'image', overwrite=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    get_root_logger().setLevel(logging.INFO)
    names = set(vars(PrepareOptions(inputs=[], out='')))
    options = PrepareOptions(**{k: v for k, v in vars(args).items() if k in names})
    if options.flow_radius == 0 and options.interpolate == 1:
        options.raft_weights = None
    summary = prepare_vsrdb(options, overwrite=args.overwrite)
    if args.lmdb:
        tic = time.perf_counter()
        pack_lmdb(Path(args.out), args.scale, rebuild=summary['frames_written_now'] > 0 or args.overwrite)
        summary['seconds']['lmdb'] = round(time.perf_counter() - tic, 2)
        get_root_logger().info(f'LMDB packing: {summary["seconds"]["lmdb"]} s')
    return summary


if __name__ == '__main__':
    main_entry(main)
