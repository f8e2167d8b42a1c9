"""Training dataset for joint video super-resolution and deblurring (VSRDB) in the REDS layout.

Streams (``<root>/<clip>/<frame>.<ext>`` on disk, key ``clip/frame`` in an LMDB):
``dataroot_lq`` blurry LR (``train_blur_bicubic/X4``), ``dataroot_gt`` sharp HR (``train_sharp``),
``dataroot_lq_sharp`` sharp LR (``train_sharp_bicubic/X4``) and optionally ``dataroot_flow``
(``<clip>/<centre>_<neighbour>.npy``, float32 (h, w, 2), flow from the centre frame to the neighbour in
LR pixels, x then y; LMDB key ``clip/<centre>_<neighbour>``, raw float32 bytes).
"""

from __future__ import annotations

import random

from fmanet_plugin.data.resumable_sampler import SampleKey, seeded_draws, split_key
from fmanet_plugin.data.vsrdb_clips import check_dataset_files, check_num_frame, open_dataset, select_clips
from fmanet_plugin.data.vsrdb_windows import read_training_window

import numpy as np
import torch
from basicsr.data.transforms import paired_random_crop
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data


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

    # option keys (besides basicsr's loader keys; checked when the options are loaded)
    OPTIONS = (
        'dataroot_lq',
        'dataroot_gt',
        'dataroot_lq_sharp',
        'dataroot_flow',
        'meta_info_file',
        'exclude_clips',
        'num_frame',
        'gt_size',
        'use_hflip',
        'use_vflip',
        'use_rot',
        'filename_tmpl',
        'filename_ext',
        'io_backend',
    )

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        name = type(self).__name__
        self.num_frame = check_num_frame(opt.get('num_frame', 3), name)
        self.scale = int(opt.get('scale', 4))
        self.gt_size = opt.get('gt_size')
        if self.gt_size is not None and self.gt_size % self.scale:
            raise ValueError(f"{name}: option 'gt_size' ({self.gt_size}) must be a multiple of 'scale' ({self.scale})")
        self.reader, clips = open_dataset(opt, ('lq', 'gt', 'lq_sharp'), ('flow',), name)
        logger = get_root_logger()
        self.clips = select_clips(
            clips,
            name,
            self.reader.roots['lq'],
            exclude=opt.get('exclude_clips'),
            min_frames=self.num_frame,
            warn=logger.warning,
        )
        check_dataset_files(
            self.reader.roots, self.clips, self.reader.backend, self.reader.ext, name, self.num_frame // 2
        )
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
        name = type(self).__name__
        window = read_training_window(self.reader, clip, self.clips[clip], self.num_frame, self.scale, name)
        lqs, lq_sharps, gts, flows = window['lq'], window['lq_sharp'], window['gt'], window.get('flow', [])
        lr_shape = lqs[0].shape

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
            'key': window['key'],
        }
        if flows:
            sample['flow'] = torch.from_numpy(np.stack(flows).transpose(0, 3, 1, 2).copy())
        return sample
