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
from multiprocessing import Pool
from pathlib import Path

import fmanet_plugin  # noqa: F401  (basicsr compat shim before importing basicsr)
from fmanet_plugin.utils.atomic_io import remove_stale_partials
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.lmdb_io import AtomicLmdbWriter

import cv2
import numpy as np
from basicsr.utils import get_root_logger
from tqdm import tqdm

VSRDB_STREAMS = {
    'train_blur_bicubic/X4': 'image',
    'train_sharp': 'image',
    'train_sharp_bicubic/X4': 'image',
    'train_flow': 'flow',
}


def list_files(folder: Path, suffix: str) -> list[tuple[str, Path]]:
    """``(key, path)`` of every ``<folder>/<clip>/<name><suffix>``, key ``clip/name``, sorted by key."""
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder '{folder}' not found")
    files = [(f'{p.parent.name}/{p.stem}', p) for p in folder.glob(f'*/*{suffix}') if p.is_file()]
    if not files:
        raise FileNotFoundError(f"no '<clip>/*{suffix}' files under '{folder}'")
    return sorted(files)


def encode_image(path: Path, compress_level: int) -> tuple[bytes, tuple[int, int, int]]:
    """PNG bytes and (h, w, c) of the image file ``path`` (pixel values unchanged)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"'{path}' could not be read as an image")
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise ValueError(f"'{path}' could not be encoded as PNG")
    shape = img.shape if img.ndim == 3 else (*img.shape, 1)
    return buf.tobytes(), shape


def encode_flow(path: Path) -> tuple[bytes, tuple[int, int, int]]:
    """Raw float32 bytes and (h, w, 2) of the flow file ``path``."""
    flow = np.load(path, allow_pickle=False)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow file '{path}' has shape {flow.shape}, expected (h, w, 2)")
    return np.ascontiguousarray(flow, dtype=np.float32).tobytes(), flow.shape


def _encode(job: tuple[str, Path, int]) -> tuple[bytes, tuple[int, int, int]]:
    kind, path, compress_level = job
    return encode_flow(path) if kind == 'flow' else encode_image(path, compress_level)


def build_lmdb(
    input_dir: str | Path,
    lmdb_path: str | Path,
    kind: str = 'image',
    ext: str = 'png',
    compress_level: int = 1,
    workers: int = 0,
    overwrite: bool = False,
) -> Path:
    """Pack one stream folder into an LMDB; nothing with the final name exists unless it completed.

    Args:
        input_dir (str | Path): Folder with ``<clip>/<frame>.<ext>`` images or ``<clip>/<c>_<n>.npy`` flows.
        lmdb_path (str | Path): Output folder, ending with ``.lmdb``.
        kind (str): ``'image'`` or ``'flow'``. Default: ``'image'``.
        ext (str): Image file extension. Default: ``'png'``.
        compress_level (int): PNG compression level 0-9 of the stored images. Default: 1.
        workers (int): Encoding processes; 0 encodes in this process. Default: 0.
        overwrite (bool): Replace an existing ``lmdb_path`` once the new one is complete. Default: False.

    Returns:
        Path: ``lmdb_path``.
    """
    if kind not in ('image', 'flow'):
        raise ValueError(f"kind must be 'image' or 'flow', got {kind!r}")
    files = list_files(Path(input_dir), '.npy' if kind == 'flow' else f'.{ext}')
    map_size = 4 * sum(p.stat().st_size for _, p in files) + (64 << 20)  # PNG re-encoding may grow the data
    jobs = [(kind, path, compress_level) for _, path in files]
    pool = Pool(workers) if workers > 0 else None
    try:
        encoded = pool.imap(_encode, jobs, chunksize=8) if pool else map(_encode, jobs)
        with AtomicLmdbWriter(lmdb_path, map_size=map_size, overwrite=overwrite) as writer:
            for (key, _), (value, shape) in tqdm(zip(files, encoded), total=len(files), desc=Path(lmdb_path).name):
                if kind == 'flow':
                    writer.put(key, value, 'npy', shape, 'float32')
                else:
                    writer.put(key, value, 'png', shape, str(compress_level))
    finally:
        if pool:
            pool.terminate()
    get_root_logger().info(f'wrote {len(files)} {kind} entries to {lmdb_path}')
    return Path(lmdb_path)


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
