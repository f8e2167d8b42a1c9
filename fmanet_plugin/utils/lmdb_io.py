"""Atomic LMDB writing and meta-info reading for the VSRDB streams (BasicSR's LMDB layout).

An LMDB folder holds ``data.mdb``, ``lock.mdb`` and a ``meta_info.txt`` with one line per key:
``<key>.png (h,w,c) <png compression level>`` for images (value: PNG bytes) and
``<key>.npy (h,w,2) float32`` for flows (value: the raw C-ordered float32 array). Keys are ``clip/frame``
for images and ``clip/<centre>_<neighbour>`` for flows.
"""

from __future__ import annotations

import shutil
from multiprocessing import Pool
from pathlib import Path

from fmanet_plugin.utils.atomic_io import partial_directory, publish_directory, remove_stale_partials

import cv2
import lmdb
import numpy as np
from basicsr.utils import get_root_logger
from tqdm import tqdm

META_INFO_NAME = 'meta_info.txt'


class AtomicLmdbWriter:
    """Write an LMDB under a temporary hidden name; it gets its final ``*.lmdb`` name only on success.

    Use as a context manager: an exception inside the block (or an interrupt) deletes the partial
    database, and a killed process leaves only a hidden ``.<name>.*.partial`` folder, never a folder
    with the final name.

    Args:
        lmdb_path (str | Path): Final path; must end with ``.lmdb``.
        map_size (int): LMDB map size in bytes (an upper bound of the data size; the file stays sparse).
        commit_every (int): Commit the write transaction after this many puts. Default: 1000.
        overwrite (bool): Replace an existing ``lmdb_path`` at the end. Default: False.
    """

    def __init__(self, lmdb_path: str | Path, map_size: int, commit_every: int = 1000, overwrite: bool = False):
        self.lmdb_path = Path(lmdb_path)
        if self.lmdb_path.suffix != '.lmdb':
            raise ValueError(f"LMDB path must end with '.lmdb', got '{self.lmdb_path}'")
        if self.lmdb_path.exists() and not overwrite:
            raise FileExistsError(f"LMDB '{self.lmdb_path}' already exists (overwrite=True replaces it)")
        for stale in remove_stale_partials(self.lmdb_path):  # of an interrupted earlier run
            get_root_logger().info(f'removed {stale}, left by an interrupted build')
        self.tmp_path = partial_directory(self.lmdb_path)
        self.commit_every = commit_every
        self.env = lmdb.open(str(self.tmp_path), map_size=map_size)
        self.txn = self.env.begin(write=True)
        self.meta_lines: list[str] = []
        self.keys: set[str] = set()

    def put(self, key: str, value: bytes, ext: str, shape: tuple[int, ...], note: str) -> None:
        """Store ``value`` under ``key`` and its meta-info line ``<key>.<ext> (h,w,c) <note>``.

        Args:
            key (str): LMDB key, e.g. ``'000/00000003'``.
            value (bytes): Encoded image or raw array bytes.
            ext (str): ``'png'`` or ``'npy'``.
            shape (tuple[int, ...]): Array shape ``(h, w, c)``.
            note (str): PNG compression level, or ``'float32'`` for raw arrays.
        """
        if key in self.keys:
            raise KeyError(f"duplicate LMDB key '{key}' in '{self.lmdb_path}'")
        self.keys.add(key)
        self.txn.put(key.encode('ascii'), value)
        self.meta_lines.append(f'{key}.{ext} ({",".join(str(v) for v in shape)}) {note}\n')
        if len(self.keys) % self.commit_every == 0:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def finish(self) -> Path:
        """Commit, write ``meta_info.txt`` and rename the database to its final name. Returns that path."""
        self.txn.commit()
        self.env.sync()
        self.env.close()
        (self.tmp_path / META_INFO_NAME).write_text(''.join(self.meta_lines))
        return publish_directory(self.tmp_path, self.lmdb_path)

    def abort(self) -> None:
        """Drop the partial database."""
        try:
            self.txn.abort()
            self.env.close()
        finally:
            shutil.rmtree(self.tmp_path, ignore_errors=True)

    def __enter__(self) -> AtomicLmdbWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def read_lmdb_meta_info(lmdb_path: str | Path) -> dict[str, tuple[int, ...]]:
    """Read the ``meta_info.txt`` of an LMDB.

    Args:
        lmdb_path (str | Path): The ``*.lmdb`` folder.

    Returns:
        dict[str, tuple[int, ...]]: Key (without file extension) -> stored array shape ``(h, w, c)``.
    """
    meta_path = Path(lmdb_path) / META_INFO_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(f"LMDB meta info '{meta_path}' not found (is '{lmdb_path}' an LMDB folder?)")
    shapes = {}
    for line_no, line in enumerate(meta_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2 or not (parts[1].startswith('(') and parts[1].endswith(')')):
            raise ValueError(f"{meta_path}:{line_no}: expected '<key>.<ext> (h,w,c) ...', got {line!r}")
        key = parts[0].rsplit('.', 1)[0]
        shapes[key] = tuple(int(v) for v in parts[1][1:-1].split(','))
    return shapes


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
