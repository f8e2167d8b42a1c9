"""basicsr's ``REDSRecurrentDataset`` (BasicVSR, IconVSR, BasicVSR++ training) on VSRDB clips up to 100 frames.

basicsr 1.4.2's ``REDSRecurrentDataset`` draws ``num_frame`` consecutive frames starting at the item's frame,
redrawing starts after ``100 - num_frame * interval`` (every clip is taken to have 100 frames) and removes a
hard-coded validation partition. This adapter keeps basicsr's ``__getitem__`` and changes only its inputs, as
``VSRDBSlidingDataset`` does: clips and lengths from ``meta_info_file`` (the split is the split between the meta
files or ``exclude_clips``), and a start that would leave the clip is redrawn uniformly among the starts that fit
at the largest interval of ``interval_list`` before basicsr sees it (basicsr's own rule for 100-frame clips and
interval 1).
"""

from __future__ import annotations

import random

from fmanet_plugin.data.resumable_sampler import SampleKey, seeded_draws, split_key
from fmanet_plugin.data.vsrdb_sliding_dataset import init_reds_attributes, read_clip_lengths

from basicsr.data.reds_dataset import REDSRecurrentDataset
from basicsr.utils.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class VSRDBRecurrentDataset(REDSRecurrentDataset):
    """basicsr's ``REDSRecurrentDataset`` for VSRDB: ``num_frame`` consecutive blurry LR frames and their sharp GT.

    Options as basicsr's ``REDSRecurrentDataset`` (``dataroot_lq`` blurry LR, ``dataroot_gt`` sharp HR,
    ``meta_info_file``, ``io_backend``, ``num_frame`` (any positive int), ``gt_size``, ``interval_list``,
    ``random_reverse``, ``use_hflip``, ``use_rot``), except: ``val_partition`` and ``test_mode`` are not used
    (every clip of ``meta_info_file`` not in the optional ``exclude_clips`` list is used), and clips may have any
    length from ``num_frame * max(interval_list)`` to 100 frames.
    Frames are ``<root>/<clip>/%08d.png`` (or LMDB keys ``clip/%08d``).

    Returns basicsr's sample: ``lq`` (t, c, h, w), ``gt`` (t, c, s*h, s*w), ``key`` (``'clip/frame'`` of the
    first frame of the sequence before a random reverse), RGB float32 in [0, 1].
    """

    def __init__(self, opt: dict):
        name = type(self).__name__
        num_frame = opt.get('num_frame')
        if not isinstance(num_frame, int) or num_frame < 1:
            raise ValueError(f"{name}: option 'num_frame' must be a positive integer, got {num_frame!r}")
        self.max_interval = max(opt.get('interval_list') or [1])
        # basicsr's rule (start <= length - num_frame * interval) needs num_frame * interval frames.
        lengths = read_clip_lengths(opt, name, num_frame * self.max_interval)
        super(REDSRecurrentDataset, self).__init__()  # torch's Dataset; basicsr's __init__ is replaced, not run
        init_reds_attributes(self, opt, lengths)

    def last_start(self, clip: str) -> int:
        """The last start frame of ``clip`` whose sequence fits at the largest interval (basicsr's bound)."""
        return self.clip_lengths[clip] - self.num_frame * self.max_interval

    def __getitem__(self, key: int | SampleKey) -> dict:
        # the training pipeline's resumable sampler passes SampleKey: every random draw comes from its seed
        index, seed = split_key(key)
        with seeded_draws(seed):
            clip, frame = self.keys[index].split('/')
            start = int(frame)
            if start > self.last_start(clip):
                start = random.randint(0, self.last_start(clip))
            return super().__getitem__(self.key_index[f'{clip}/{start:08d}'])
