"""basicsr's ``VideoTestDataset`` / ``VideoRecurrentTestDataset`` (the validation sets of ``EDVRModel`` and
``VideoRecurrentModel``) on VSRDB clips.

basicsr 1.4.2's ``VideoTestDataset.__init__`` accepts only datasets *named* ``Vid4``, ``REDS4`` or
``REDSofficial`` (any other ``name`` raises ``Non-supported video test dataset``), and
``VideoRecurrentTestDataset`` works only with ``cache_data: true``. basicsr's video models read the dataset
through ``data_info`` (``folder``, ``idx`` ``'i/n'``, ``lq_path``, ...) and the items' ``folder`` / ``idx`` /
``lq_path`` keys, so the plugin's ``VSRDBTestDataset`` (different keys) does not fit them either. These adapters
build basicsr's ``data_info`` from the plugin's clip listing (``meta_info_file`` or the clip folders) under any
name, and read uncached clips on demand; basicsr's ``__getitem__`` does the rest.
"""

from __future__ import annotations

from pathlib import Path

from fmanet_plugin.data.vsrdb_clips import check_num_frame, list_clips

from basicsr.data.data_util import read_img_seq
from basicsr.data.video_test_dataset import VideoRecurrentTestDataset, VideoTestDataset
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data


def init_video_test_info(dataset, opt: dict, num_frame: int) -> None:
    """Fill the attributes of basicsr's ``VideoTestDataset`` for the clips of ``opt``.

    Args:
        dataset: The dataset being initialised.
        opt (dict): ``dataroot_lq``, ``dataroot_gt``, ``meta_info_file`` (optional), ``clips`` (optional list
            restricting the clips), ``filename_tmpl``, ``filename_ext``, ``cache_data``, ``io_backend`` (disk).
        num_frame (int): Window size; the first and last ``num_frame // 2`` frames are marked as border.
    """
    owner = type(dataset).__name__
    for key in ('dataroot_lq', 'dataroot_gt'):
        if opt.get(key) is None:
            raise ValueError(f"{owner}: option '{key}' is required")
    io_backend = opt.get('io_backend', {'type': 'disk'})
    if io_backend['type'] != 'disk':
        raise ValueError(f"{owner}: io_backend type must be 'disk' (basicsr reads test frames from files)")
    clips = list_clips({**opt, 'io_backend': io_backend}, opt['dataroot_lq'], owner)
    if opt.get('clips') is not None:
        wanted = [str(c) for c in opt['clips']]
        missing = [c for c in wanted if c not in clips]
        if missing:
            raise ValueError(f"{owner}: option 'clips' names clips not in the dataset: {missing}")
        clips = {c: clips[c] for c in wanted}
    if not clips:
        raise ValueError(f"{owner}: no clips found under '{opt['dataroot_lq']}'")

    dataset.opt = opt
    dataset.cache_data = opt.get('cache_data', False)
    dataset.gt_root, dataset.lq_root = opt['dataroot_gt'], opt['dataroot_lq']
    dataset.file_client = None
    dataset.io_backend_opt = io_backend
    dataset.data_info = {'lq_path': [], 'gt_path': [], 'folder': [], 'idx': [], 'border': []}
    dataset.imgs_lq, dataset.imgs_gt = {}, {}
    ext = opt.get('filename_ext', 'png')
    radius = num_frame // 2
    for clip, stems in clips.items():
        lq_paths = [str(Path(opt['dataroot_lq'], clip, f'{s}.{ext}')) for s in stems]
        gt_paths = [str(Path(opt['dataroot_gt'], clip, f'{s}.{ext}')) for s in stems]
        for path in (lq_paths[0], gt_paths[0]):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{owner}: frame file '{path}' not found")
        n = len(stems)
        dataset.data_info['lq_path'].extend(lq_paths)
        dataset.data_info['gt_path'].extend(gt_paths)
        dataset.data_info['folder'].extend([clip] * n)
        dataset.data_info['idx'].extend(f'{i}/{n}' for i in range(n))
        dataset.data_info['border'].extend(int(i < radius or i >= n - radius) for i in range(n))
        if dataset.cache_data:
            dataset.imgs_lq[clip], dataset.imgs_gt[clip] = read_img_seq(lq_paths), read_img_seq(gt_paths)
        else:
            dataset.imgs_lq[clip], dataset.imgs_gt[clip] = lq_paths, gt_paths
    get_root_logger().info(f"{owner} '{opt.get('name')}': {len(clips)} clips, {len(dataset.data_info['idx'])} frames")


@DATASET_REGISTRY.register()
class VSRDBVideoTestDataset(VideoTestDataset):
    """basicsr's ``VideoTestDataset`` (one item per frame, ``num_frame`` LR frames padded at clip ends) for VSRDB.

    Options as basicsr's (``dataroot_lq``, ``dataroot_gt``, ``meta_info_file`` optional, ``num_frame``,
    ``padding`` (``'replicate'`` = edge padding, the protocol of ../shared/SPEC.md), ``cache_data``,
    ``io_backend`` disk), any ``name``, plus ``clips``, ``filename_tmpl`` (``'08d'``), ``filename_ext``
    (``'png'``). Items: ``lq`` (t, c, h, w), ``gt`` (c, s*h, s*w), ``folder``, ``idx`` (``'i/n'``), ``border``,
    ``lq_path``.
    """

    def __init__(self, opt: dict):
        data.Dataset.__init__(self)  # basicsr's __init__ is replaced (it rejects other dataset names)
        opt.setdefault('padding', 'replicate')
        init_video_test_info(self, opt, check_num_frame(opt.get('num_frame'), type(self).__name__))


@DATASET_REGISTRY.register()
class VSRDBVideoRecurrentTestDataset(VideoRecurrentTestDataset):
    """basicsr's ``VideoRecurrentTestDataset`` (one item per clip: all LR frames and all GT frames) for VSRDB.

    Options as ``VSRDBVideoTestDataset`` without ``num_frame`` / ``padding``; ``cache_data: false`` reads each
    clip when it is requested. Items: ``lq`` (t, c, h, w), ``gt`` (t, c, s*h, s*w), ``folder``.
    """

    def __init__(self, opt: dict):
        data.Dataset.__init__(self)  # basicsr's __init__ is replaced (it rejects other dataset names)
        init_video_test_info(self, opt, num_frame=1)
        self.folders = sorted(set(self.data_info['folder']))

    def __getitem__(self, index: int) -> dict:
        if self.cache_data:
            return super().__getitem__(index)
        folder = self.folders[index]
        return {'lq': read_img_seq(self.imgs_lq[folder]), 'gt': read_img_seq(self.imgs_gt[folder]), 'folder': folder}
