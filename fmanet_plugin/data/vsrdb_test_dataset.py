"""Test / validation dataset for VSRDB: every frame of every clip, windows edge-padded at clip ends."""

from __future__ import annotations

from fmanet_plugin.data.vsrdb_clips import check_dataset_files, check_num_frame, open_dataset, select_clips
from fmanet_plugin.data.vsrdb_windows import read_test_window

import torch
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data


@DATASET_REGISTRY.register()
class VSRDBTestDataset(data.Dataset):
    """One item per frame of every clip, with the temporal window padded by replicating the end frames.

    Options: ``dataroot_lq`` (blurry LR), ``dataroot_gt`` (sharp HR, optional), ``meta_info_file``
    (optional; without it the clips are listed from ``dataroot_lq``), ``clips`` (optional list restricting
    the clips), ``exclude_clips`` (optional list), ``num_frame`` (odd, default 3), ``scale`` (4),
    ``filename_tmpl`` (``'08d'``), ``filename_ext`` (``'png'``), ``io_backend`` (``{type: disk | lmdb}``).
    On disk, ``dataroot_lq`` / ``dataroot_gt`` may also be folders of videos ``<root>/<clip>.mp4`` (any of
    ``VIDEO_EXTENSIONS``): one clip per video, frames ``%08d`` by index, each clip decoded once.

    Returns ``lq`` (t, c, h, w), ``gt`` (c, s*h, s*w) centre frame (only with ``dataroot_gt``), ``clip``,
    ``frame`` (file stem), ``frame_idx`` (0-based), ``num_frames`` (frames in the clip) and ``key``
    (``'clip/frame'``); images RGB float32 in [0, 1].
    """

    # option keys (besides basicsr's loader keys; checked when the options are loaded)
    OPTIONS = (
        'dataroot_lq',
        'dataroot_gt',
        'meta_info_file',
        'clips',
        'exclude_clips',
        'num_frame',
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
        self.reader, clips = open_dataset(opt, ('lq',), ('gt',), name, allow_video=True)
        lq_root, only, excluded = self.reader.roots['lq'], opt.get('clips'), opt.get('exclude_clips')
        self.clips = select_clips(clips, name, lq_root, only=only, exclude=excluded)
        check_dataset_files(self.reader.roots, self.clips, self.reader.backend, self.reader.ext, name)
        self.items = [(clip, idx) for clip, stems in self.clips.items() for idx in range(len(stems))]
        get_root_logger().info(f'{name}: {len(self.clips)} clips, {len(self.items)} frames')

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        clip, idx = self.items[index]
        window = read_test_window(
            self.reader, clip, self.clips[clip], idx, self.num_frame, self.scale, type(self).__name__
        )
        sample = {
            'lq': torch.stack(img2tensor(window['lq'], bgr2rgb=True, float32=True)),
            'clip': clip,
            **{k: window[k] for k in ('frame', 'frame_idx', 'num_frames', 'key')},
        }
        if 'gt' in window:
            sample['gt'] = img2tensor(window['gt'], bgr2rgb=True, float32=True)
        return sample
