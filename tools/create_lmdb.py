"""Pack VSRDB frame folders and flow folders into LMDBs (BasicSR layout), atomically.

Images are stored as PNG bytes under keys ``clip/frame`` with meta-info lines
``clip/frame.png (h,w,c) <compression>``; flows (``<clip>/<centre>_<neighbour>.npy``) as raw float32 arrays
under keys ``clip/<centre>_<neighbour>`` with lines ``clip/<centre>_<neighbour>.npy (h,w,2) float32``.
Each database is built under a hidden temporary name and renamed to ``<folder>.lmdb`` when complete.

Examples::

    python tools/create_lmdb.py --root datasets/demo        # every VSRDB stream found under the root
    python tools/create_lmdb.py --input datasets/demo/train_flow --output flow.lmdb --kind flow
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import fmanet_plugin  # noqa: F401  (basicsr compat shim before importing basicsr)
from fmanet_plugin.utils.atomic_io import remove_stale_partials
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.lmdb_io import build_lmdb

from basicsr.utils import get_root_logger

VSRDB_STREAMS = {
    'train_blur_bicubic/X4': 'image',
    'train_sharp': 'image',
    'train_sharp_bicubic/X4': 'image',
    'train_flow': 'flow',
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Pack VSRDB frames (PNG bytes) and flows (raw float32) into BasicSR-style LMDBs, atomically.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        '--root', help=f'dataset root: pack each of {list(VSRDB_STREAMS)} found there into <stream>.lmdb'
    )
    parser.add_argument('--input', help='one stream folder (<clip>/<frame>.<ext> or <clip>/<c>_<n>.npy)')
    parser.add_argument('--output', help='output .lmdb folder for --input (default: <input>.lmdb)')
    parser.add_argument('--kind', choices=['image', 'flow'], default='image', help='what --input holds')
    parser.add_argument('--ext', default='png', help='image file extension')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level of stored images')
    parser.add_argument('--workers', type=int, default=0, help='encoding processes (0: none)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing LMDBs')
    args = parser.parse_args(argv)
    if (args.root is None) == (args.input is None):
        parser.error('give exactly one of --root and --input')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    get_root_logger().setLevel(logging.INFO)
    options = dict(ext=args.ext, compress_level=args.compress_level, workers=args.workers, overwrite=args.overwrite)
    if args.input:
        output = args.output or str(Path(args.input)) + '.lmdb'
        build_lmdb(args.input, output, kind=args.kind, **options)
        return
    root = Path(args.root)
    streams = {s: kind for s, kind in VSRDB_STREAMS.items() if (root / s).is_dir()}
    if not streams:
        raise FileNotFoundError(f"none of {list(VSRDB_STREAMS)} found under '{root}'")
    for stream, kind in streams.items():
        output = root / f'{stream}.lmdb'
        remove_stale_partials(output)  # left by an interrupted run
        if output.exists() and not args.overwrite:
            get_root_logger().info(f'{output} exists, skipped (use --overwrite to rebuild it)')
            continue
        build_lmdb(root / stream, output, kind=kind, **options)


if __name__ == '__main__':
    main_entry(main)
