"""Training dataset for joint video super-resolution and deblurring (VSRDB) in the REDS layout.

Streams (``<root>/<clip>/<frame>.<ext>`` on disk, key ``clip/frame`` in an LMDB):
``dataroot_lq`` blurry LR (``train_blur_bicubic/X4``), ``dataroot_gt`` sharp HR (``train_sharp``),
``dataroot_lq_sharp`` sharp LR (``train_sharp_bicubic/X4``) and optionally ``dataroot_flow``
(``<clip>/<centre>_<neighbour>.npy``, float32 (h, w, 2), flow from the centre frame to the neighbour in
LR pixels, x then y; LMDB key ``clip/<centre>_<neighbour>``, raw float32 bytes).
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

from fmanet_plugin.data.resumable_sampler import SampleKey, seeded_draws, split_key
from fmanet_plugin.utils.lmdb_io import read_lmdb_meta_info

import numpy as np
import torch
from basicsr.data.transforms import paired_random_crop
from basicsr.utils import FileClient, get_root_logger, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data


def check_num_frame(num_frame: int, owner: str) -> int:
    """Return ``num_frame`` if it is an odd positive int, else raise a ValueError naming the option."""
    if not isinstance(num_frame, int) or num_frame < 1 or num_frame % 2 == 0:
        raise ValueError(f"{owner}: option 'num_frame' must be an odd positive integer (2N+1), got {num_frame!r}")
    return num_frame


def _stem_sort_key(stem: str) -> tuple:
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def read_meta_info_file(meta_info_file: str | Path, filename_tmpl: str = '08d') -> dict[str, list[str]]:
    """Read a REDS-style meta info file with lines ``<clip> <num_frames> (h,w,c)``.

    Args:
        meta_info_file (str | Path): The text file.
        filename_tmpl (str): Format spec of the frame stems; frames are numbered from 0. Default: ``'08d'``.

    Returns:
        dict[str, list[str]]: Clip name -> frame file stems, in temporal order.
    """
    path = Path(meta_info_file)
    if not path.is_file():
        raise FileNotFoundError(f"meta_info_file '{path}' not found")
    clips = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"{path}:{line_no}: expected '<clip> <num_frames> (h,w,c)', got {line!r}")
        clips[parts[0]] = [format(i, filename_tmpl) for i in range(int(parts[1]))]
    return clips


def list_clips(opt: dict, root: str, owner: str) -> dict[str, list[str]]:
    """List the clips and frame stems of a dataset.

    From ``opt['meta_info_file']`` if given; otherwise from the LMDB meta info of ``root`` (lmdb backend) or
    from the clip folders under ``root`` (disk backend, files ending with ``.<filename_ext>``).

    Args:
        opt (dict): Dataset options (``meta_info_file``, ``filename_tmpl``, ``filename_ext``, ``io_backend``).
        root (str): The stream whose contents define the clips (normally ``dataroot_lq``).
        owner (str): Dataset class name for error messages.

    Returns:
        dict[str, list[str]]: Clip name -> frame stems, sorted by clip name.
    """
    if opt.get('meta_info_file'):
        clips = read_meta_info_file(opt['meta_info_file'], opt.get('filename_tmpl', '08d'))
    elif opt['io_backend']['type'] == 'lmdb':
        clips = {}
        for key in read_lmdb_meta_info(root):
            clip, _, stem = key.rpartition('/')
            clips.setdefault(clip, []).append(stem)
    else:
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"{owner}: frame folder '{root}' not found")
        ext = '.' + opt.get('filename_ext', 'png')
        clips = {}
        for clip_dir in root_path.iterdir():
            stems = [p.stem for p in clip_dir.iterdir() if p.suffix == ext] if clip_dir.is_dir() else []
            if stems:
                clips[clip_dir.name] = stems
    return {clip: sorted(stems, key=_stem_sort_key) for clip, stems in sorted(clips.items())}


def transform_frames(
    lr_frames: list[np.ndarray],
    hr_frames: list[np.ndarray],
    flows: list[np.ndarray],
    hflip: bool,
    vflip: bool,
    transpose: bool,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Flip / transpose frames and flow fields identically, transforming the flow vectors as well.

    With a flow ``f`` mapping a centre frame ``C`` onto a neighbour ``N`` (``C(p) = N(p + f(p))``), the
    transformed flow maps the transformed frames: a horizontal flip negates x, a vertical flip negates y
    and a transpose swaps x and y. Applied in the order hflip, vflip, transpose.

    Args:
        lr_frames (list[ndarray]): LR images (h, w, c).
        hr_frames (list[ndarray]): HR images (s*h, s*w, c).
        flows (list[ndarray]): Flow fields (h, w, 2), channels (x, y).
        hflip (bool): Flip left-right.
        vflip (bool): Flip up-down.
        transpose (bool): Swap the height and width axes.

    Returns:
        tuple[list[ndarray], list[ndarray], list[ndarray]]: Transformed (contiguous) copies.
    """

    def image(img: np.ndarray) -> np.ndarray:
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if transpose:
            img = img.transpose(1, 0, 2)
        return np.ascontiguousarray(img)

    def flow(f: np.ndarray) -> np.ndarray:
        if hflip:
            f = f[:, ::-1] * np.array([-1, 1], dtype=f.dtype)
        if vflip:
            f = f[::-1] * np.array([1, -1], dtype=f.dtype)
        if transpose:
            f = f.transpose(1, 0, 2)[..., ::-1]
        return np.ascontiguousarray(f)

    return [image(x) for x in lr_frames], [image(x) for x in hr_frames], [flow(f) for f in flows]


_LMDB_CLIENTS: dict[tuple[int, str], FileClient] = {}


class VSRDBReader:
    """Reads frames and flows through basicsr's FileClient, created lazily (once per worker process).

    Args:
        roots (dict[str, str]): Stream name (``lq``, ``gt``, ``lq_sharp``, ``flow``) -> folder or ``.lmdb``.
        io_backend (dict): ``{'type': 'disk' | 'lmdb', ...}`` (extra keys go to the FileClient).
        filename_ext (str): Image file extension on disk.
        owner (str): Dataset class name for error messages.
    """

    def __init__(self, roots: dict[str, str], io_backend: dict, filename_ext: str, owner: str):
        self.roots = roots
        self.io_backend = dict(io_backend)
        self.backend = self.io_backend.pop('type')
        if self.backend not in ('disk', 'lmdb'):
            raise ValueError(f"{owner}: io_backend type must be 'disk' or 'lmdb', got {self.backend!r}")
        if self.backend == 'lmdb':
            for name, root in roots.items():
                if not Path(root, 'data.mdb').is_file():
                    raise FileNotFoundError(f"{owner}: option 'dataroot_{name}' = '{root}' is not an LMDB folder")
        self.ext = filename_ext
        self.owner = owner
        self.client = None

    def _lmdb_client(self, root: str) -> FileClient:
        # py-lmdb refuses to open one environment twice in a process (e.g. train and val datasets on the same
        # LMDB), so each database gets one FileClient per process, shared by all readers.
        key = (os.getpid(), root)
        if key not in _LMDB_CLIENTS:
            _LMDB_CLIENTS[key] = FileClient('lmdb', db_paths=[root], client_keys=['default'], **self.io_backend)
        return _LMDB_CLIENTS[key]

    def _get(self, stream: str, clip: str, name: str, ext: str) -> tuple[bytes, str]:
        if self.backend == 'lmdb':
            where = f"key '{clip}/{name}' in LMDB '{self.roots[stream]}'"
            content = self._lmdb_client(self.roots[stream]).get(f'{clip}/{name}', 'default')
            if content is None:
                raise KeyError(f'{self.owner}: missing {stream} {where}')
            return content, where
        path = str(Path(self.roots[stream], clip, f'{name}.{ext}'))
        if self.client is None:
            self.client = FileClient('disk', **self.io_backend)
        try:
            return self.client.get(path), f"file '{path}'"
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.owner}: missing {stream} file '{path}'") from None

    def image(self, stream: str, clip: str, stem: str) -> np.ndarray:
        """Read one frame as a BGR float32 array (h, w, 3) in [0, 1]."""
        content, where = self._get(stream, clip, stem, self.ext)
        img = imfrombytes(content, float32=False)
        if img is None:
            raise ValueError(f'{self.owner}: {where} could not be decoded as an image')
        return img.astype(np.float32) / 255.0

    def flow(self, clip: str, centre: str, neighbour: str, lr_shape: tuple[int, int]) -> np.ndarray:
        """Read the flow from ``centre`` to ``neighbour`` as float32 (h, w, 2); ``lr_shape`` = (h, w)."""
        content, where = self._get('flow', clip, f'{centre}_{neighbour}', 'npy')
        expected = (*lr_shape, 2)
        if self.backend == 'lmdb':
            flow = np.frombuffer(content, dtype=np.float32)
            if flow.size != np.prod(expected):
                raise ValueError(f'{self.owner}: {where} holds {flow.size} float32 values, expected {expected}')
            flow = flow.reshape(expected).copy()
        else:
            flow = np.load(io.BytesIO(content), allow_pickle=False)
            if flow.shape != expected:
                raise ValueError(
                    f'{self.owner}: {where} has shape {flow.shape}, expected {expected} (LR frame size, 2)'
                )
            flow = flow.astype(np.float32, copy=False)
        if not np.isfinite(flow).all():
            raise ValueError(f'{self.owner}: {where} holds {np.size(flow) - np.isfinite(flow).sum()} NaN/inf values')
        return flow


def check_scale(lr: np.ndarray, hr: np.ndarray, scale: int, hr_where: str, owner: str) -> None:
    """Raise a ValueError naming ``hr_where`` unless ``hr`` is exactly ``scale`` times ``lr`` in size."""
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise ValueError(
            f'{owner}: HR frame {hr_where} has size {hr.shape[:2]}, expected {scale} x the LR size {lr.shape[:2]}'
        )


@DATASET_REGISTRY.register()
class VSRDBDataset(data.Dataset):
    """Random VSRDB training windows: blurry LR, sharp HR, sharp LR and optional flow, cropped and augmented.

    Options: ``dataroot_lq``, ``dataroot_gt``, ``dataroot_lq_sharp``, ``dataroot_flow`` (optional),
    ``meta_info_file`` (lines ``<clip> <num_frames> (h,w,c)``; without it the clips are listed from
    ``dataroot_lq``), ``exclude_clips`` (list), ``num_frame`` (odd, default 3), ``gt_size`` (HR patch,
    ``None`` for whole frames), ``scale`` (4), ``use_hflip``, ``use_vflip``, ``use_rot`` (transpose),
    ``filename_tmpl`` (``'08d'``), ``filename_ext`` (``'png'``), ``io_backend`` (``{type: disk | lmdb}``).

    One item per frame of every clip; the item's clip is used with a random centre whose whole window lies
    inside the clip. Returns ``lq`` (t, c, h, w), ``gt`` (t, c, s*h, s*w), ``lq_sharp`` (t, c, h, w),
    ``flow`` (t, 2, h, w) (only with ``dataroot_flow``; zero at the centre) and ``key`` (``'clip/frame'``),
    images RGB float32 in [0, 1].
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        name = type(self).__name__
        self.num_frame = check_num_frame(opt.get('num_frame', 3), name)
        self.scale = int(opt.get('scale', 4))
        self.gt_size = opt.get('gt_size')
        if self.gt_size is not None and self.gt_size % self.scale:
            raise ValueError(f"{name}: option 'gt_size' ({self.gt_size}) must be a multiple of 'scale' ({self.scale})")
        roots = {}
        for stream in ('lq', 'gt', 'lq_sharp', 'flow'):
            root = opt.get(f'dataroot_{stream}')
            if root is None and stream != 'flow':
                raise ValueError(f"{name}: option 'dataroot_{stream}' is required")
            if root is not None:
                roots[stream] = str(root)
        io_backend = opt.get('io_backend', {'type': 'disk'})
        self.reader = VSRDBReader(roots, io_backend, opt.get('filename_ext', 'png'), name)
        clips = list_clips({**opt, 'io_backend': io_backend}, roots['lq'], name)
        excluded = {str(c) for c in opt.get('exclude_clips') or []}
        logger = get_root_logger()
        self.clips = {}
        for clip, stems in clips.items():
            if clip in excluded:
                continue
            if len(stems) < self.num_frame:
                logger.warning(f'{name}: clip {clip} has {len(stems)} frames < num_frame {self.num_frame}; skipped')
                continue
            self.clips[clip] = stems
        if not self.clips:
            raise ValueError(f"{name}: no clip with at least {self.num_frame} frames under '{roots['lq']}'")
        self.items = [clip for clip, stems in self.clips.items() for _ in stems]
        logger.info(f'{name}: {len(self.clips)} clips, {len(self.items)} frames, num_frame={self.num_frame}')

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | SampleKey) -> dict:
        # A ResumableSampler key carries the seed of this sample's crop/window/flip draws (exact resume).
        index, seed = split_key(key)
        with seeded_draws(seed):
            return self._random_window(index)

    def _random_window(self, index: int) -> dict:
        clip = self.items[index]
        stems = self.clips[clip]
        radius = self.num_frame // 2
        centre = random.randint(radius, len(stems) - 1 - radius)
        window = stems[centre - radius : centre + radius + 1]
        reader, name = self.reader, type(self).__name__

        lqs = [reader.image('lq', clip, s) for s in window]
        lq_sharps = [reader.image('lq_sharp', clip, s) for s in window]
        gts = [reader.image('gt', clip, s) for s in window]
        lr_shape = lqs[0].shape
        for stem, lq, lq_sharp, gt in zip(window, lqs, lq_sharps, gts):
            if lq.shape != lr_shape or lq_sharp.shape != lr_shape:
                raise ValueError(
                    f'{name}: LR frames of {clip}/{stem} have sizes {lq.shape[:2]} (lq), {lq_sharp.shape[:2]} '
                    f'(lq_sharp), expected {lr_shape[:2]} like {clip}/{window[0]}'
                )
            check_scale(lq, gt, self.scale, f'{clip}/{stem}', name)
        flows = []
        if 'flow' in reader.roots:
            for i, stem in enumerate(window):
                if i == radius:
                    flows.append(np.zeros((*lr_shape[:2], 2), np.float32))
                else:
                    flows.append(reader.flow(clip, window[radius], stem, lr_shape[:2]))

        if self.gt_size is not None:
            lq_size = self.gt_size // self.scale
            if lr_shape[0] < lq_size or lr_shape[1] < lq_size:
                raise ValueError(
                    f"{name}: LR frames of clip {clip} ({lr_shape[:2]}) are smaller than 'gt_size'/'scale' = {lq_size}"
                )
            gts, lrs = paired_random_crop(gts, lqs + lq_sharps + flows, self.gt_size, self.scale, clip)
            gts = gts if isinstance(gts, list) else [gts]  # basicsr unwraps one-element lists
            t = self.num_frame
            lqs, lq_sharps, flows = lrs[:t], lrs[t : 2 * t], lrs[2 * t :]
        hflip = self.opt.get('use_hflip', False) and random.random() < 0.5
        vflip = self.opt.get('use_vflip', False) and random.random() < 0.5
        transpose = self.opt.get('use_rot', False) and random.random() < 0.5
        lrs, gts, flows = transform_frames(lqs + lq_sharps, gts, flows, hflip, vflip, transpose)

        lrs = torch.stack(img2tensor(lrs, bgr2rgb=True, float32=True))
        sample = {
            'lq': lrs[: self.num_frame],
            'gt': torch.stack(img2tensor(gts, bgr2rgb=True, float32=True)),
            'lq_sharp': lrs[self.num_frame :],
            'key': f'{clip}/{window[radius]}',
        }
        if flows:
            sample['flow'] = torch.from_numpy(np.stack(flows).transpose(0, 3, 1, 2).copy())
        return sample
