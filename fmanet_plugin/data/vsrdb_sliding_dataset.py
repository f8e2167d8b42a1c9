"""basicsr's ``REDSDataset`` (sliding-window training, e.g. EDVR) on VSRDB clips of any length up to 100 frames.

basicsr 1.4.2's ``REDSDataset`` assumes REDS: every clip has exactly 100 frames (centres are redrawn until the
window fits in frames 0-99) and the validation clips are removed by a hard-coded partition (REDS4 or the official
one). On shorter clips it reads frames that do not exist. This adapter keeps basicsr's ``__getitem__`` (reading,
cropping, augmentation) and changes only what it is given:

* the clips and their lengths come from ``meta_info_file`` (lines ``<clip> <num_frames> (h,w,c)``), and every
  clip listed there is used except those in ``exclude_clips``: the train/validation split is the split between
  the meta files (``meta_info_train.txt`` / ``meta_info_val.txt`` of ``tools/make_demo_data.py``) or an explicit
  ``exclude_clips`` list (REDS4 in ``options/baselines/``, as in ``options/fmanet_stage2.yml``), not a partition
  hard-coded by name;
* a sample whose window (at the largest interval of ``interval_list``) would leave its clip gets a centre drawn
  uniformly among the centres whose window fits, before basicsr sees it. With ``interval_list: [1]`` (the
  configurations of the papers) this is basicsr's own rule for 100-frame clips.
"""

from __future__ import annotations

import random
from pathlib import Path

from fmanet_plugin.data.resumable_sampler import SampleKey, seeded_draws, split_key
from fmanet_plugin.data.vsrdb_clips import check_num_frame, read_meta_info_file

from basicsr.data.reds_dataset import REDSDataset
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY

# basicsr's REDS datasets redraw any window that reaches past frame 99; longer clips would be sampled unevenly.
REDS_MAX_FRAMES = 100


def read_clip_lengths(opt: dict, owner: str, min_frames: int) -> dict[str, int]:
    """Clip name -> number of frames from ``opt['meta_info_file']``, checked for basicsr's REDS datasets.

    Args:
        opt (dict): Dataset options with ``meta_info_file``.
        owner (str): Dataset class name for error messages.
        min_frames (int): Frames a clip needs for one training sample.

    Returns:
        dict[str, int]: The clips in file order.
    """
    if not opt.get('meta_info_file'):
        raise ValueError(f"{owner}: option 'meta_info_file' is required (lines '<clip> <num_frames> (h,w,c)')")
    if opt.get('filename_tmpl', '08d') != '08d' or opt.get('filename_ext', 'png') != 'png':
        raise ValueError(f"{owner}: basicsr's REDS datasets read frames named '%08d.png' only")
    excluded = {str(c) for c in opt.get('exclude_clips') or []}
    clips = read_meta_info_file(opt['meta_info_file']).items()
    lengths = {clip: len(stems) for clip, stems in clips if clip not in excluded}
    for clip, length in lengths.items():
        if not min_frames <= length <= REDS_MAX_FRAMES:
            raise ValueError(
                f"{owner}: clip {clip} of '{opt['meta_info_file']}' has {length} frames; expected "
                f'{min_frames} to {REDS_MAX_FRAMES} (a training window, basicsr REDS limit)'
            )
    if not lengths:
        raise ValueError(f"{owner}: '{opt['meta_info_file']}' lists no clip")
    return lengths


def init_reds_attributes(dataset, opt: dict, lengths: dict[str, int]) -> None:
    """Set the attributes that basicsr's ``REDSDataset.__getitem__`` / ``REDSRecurrentDataset.__getitem__`` read.

    Args:
        dataset: The dataset being initialised.
        opt (dict): Dataset options.
        lengths (dict[str, int]): Clip name -> number of frames.
    """
    owner = type(dataset).__name__
    if opt.get('dataroot_flow') is not None:
        raise ValueError(
            f"{owner}: option 'dataroot_flow' is not supported (basicsr reads quantised PNG flows "
            "'<frame>_p1.png'; the plugin's flows are .npy files for VSRDBDataset)"
        )
    for key in ('dataroot_gt', 'dataroot_lq', 'gt_size', 'use_hflip', 'use_rot', 'scale'):
        if opt.get(key) is None:  # basicsr's __getitem__ indexes these
            raise ValueError(f"{owner}: option '{key}' is required")
    dataset.opt = opt
    dataset.gt_root, dataset.lq_root = Path(opt['dataroot_gt']), Path(opt['dataroot_lq'])
    dataset.flow_root = None
    dataset.num_frame = opt['num_frame']
    dataset.num_half_frames = opt['num_frame'] // 2
    dataset.keys = [f'{clip}/{i:08d}' for clip, length in lengths.items() for i in range(length)]
    dataset.key_index = {key: i for i, key in enumerate(dataset.keys)}
    dataset.clip_lengths = lengths
    dataset.file_client = None
    dataset.io_backend_opt = dict(opt.get('io_backend', {'type': 'disk'}))
    dataset.is_lmdb = dataset.io_backend_opt['type'] == 'lmdb'
    if dataset.is_lmdb:
        dataset.io_backend_opt['db_paths'] = [dataset.lq_root, dataset.gt_root]
        dataset.io_backend_opt['client_keys'] = ['lq', 'gt']
    dataset.interval_list = list(opt.get('interval_list', [1]))
    dataset.random_reverse = opt.get('random_reverse', False)
    if not dataset.interval_list or any(not isinstance(i, int) or i < 1 for i in dataset.interval_list):
        raise ValueError(f"{owner}: option 'interval_list' must list positive integers, got {dataset.interval_list}")
    get_root_logger().info(
        f'{owner}: {len(lengths)} clips, {len(dataset.keys)} frames, num_frame={dataset.num_frame}, '
        f'intervals {dataset.interval_list}, random reverse {dataset.random_reverse}'
    )


@DATASET_REGISTRY.register()
class VSRDBSlidingDataset(REDSDataset):
    """basicsr's ``REDSDataset`` for VSRDB: the centre GT frame and ``num_frame`` blurry LR frames around it.

    Options as basicsr's ``REDSDataset`` (``dataroot_lq`` blurry LR, ``dataroot_gt`` sharp HR,
    ``meta_info_file``, ``io_backend``, ``num_frame``, ``gt_size``, ``interval_list``, ``random_reverse``,
    ``use_hflip``, ``use_rot``), except: ``val_partition`` is not used (every clip of ``meta_info_file`` not in
    the optional ``exclude_clips`` list is a training clip), clips may have any length from
    ``(num_frame - 1) * max(interval_list) + 1`` to 100 frames, and ``dataroot_flow`` is not supported.
    Frames are ``<root>/<clip>/%08d.png`` (or LMDB keys ``clip/%08d``).

    Returns basicsr's sample: ``lq`` (t, c, h, w), ``gt`` (c, s*h, s*w), ``key`` (``'clip/frame'`` of the centre
    frame used), RGB float32 in [0, 1].
    """

    def __init__(self, opt: dict):
        name = type(self).__name__
        num_frame = check_num_frame(opt.get('num_frame'), name)
        self.max_interval = max(opt.get('interval_list') or [1])
        lengths = read_clip_lengths(opt, name, (num_frame - 1) * self.max_interval + 1)
        super(REDSDataset, self).__init__()  # torch's Dataset; basicsr's __init__ is replaced, not run
        init_reds_attributes(self, opt, lengths)

    def centre_range(self, clip: str) -> tuple[int, int]:
        """First and last centre frame of ``clip`` whose window fits at the largest interval."""
        reach = self.num_half_frames * self.max_interval
        return reach, self.clip_lengths[clip] - 1 - reach

    def __getitem__(self, key: int | SampleKey) -> dict:
        # the training pipeline's resumable sampler passes SampleKey: every random draw comes from its seed
        index, seed = split_key(key)
        with seeded_draws(seed):
            clip, frame = self.keys[index].split('/')
            low, high = self.centre_range(clip)
            centre = int(frame)
            if not low <= centre <= high:
                centre = random.randint(low, high)
            return super().__getitem__(self.key_index[f'{clip}/{centre:08d}'])
