"""Training augmentation of VSRDB windows: one random patch for all streams, flips/transpose with flow handling.

Both transforms reuse the BasicSR dataset's functions (basicsr's ``paired_random_crop`` and the plugin's
``transform_frames``) and draw their random numbers in the same order as BasicSR's ``VSRDBDataset``, so with
the same seed the two toolboxes produce the same samples.
"""

from __future__ import annotations

import random

from fmanet_plugin.data.vsrdb_dataset import transform_frames
from fmanet_plugin.mm.registry import TRANSFORMS

from basicsr.data.transforms import paired_random_crop
from mmcv.transforms import BaseTransform

LR_STREAMS = ('lq', 'lq_sharp', 'flow')


@TRANSFORMS.register_module()
class PairedVSRDBRandomCrop(BaseTransform):
    """Crops one random HR patch from every ``gt`` frame and the matching LR patch from ``lq``, ``lq_sharp`` and
    ``flow`` (flow vectors are unchanged by a crop).

    Args:
        gt_patch_size (int): HR patch size, a multiple of ``scale``; the LR patch is ``gt_patch_size // scale``.
        scale (int): HR / LR size ratio. Default: 4.
    """

    def __init__(self, gt_patch_size: int, scale: int = 4) -> None:
        if gt_patch_size % scale:
            raise ValueError(
                f'PairedVSRDBRandomCrop: gt_patch_size {gt_patch_size} must be a multiple of scale {scale}'
            )
        self.gt_patch_size = gt_patch_size
        self.scale = scale

    def transform(self, results: dict) -> dict:
        lr_size = self.gt_patch_size // self.scale
        height, width = results['lq'][0].shape[:2]
        if height < lr_size or width < lr_size:
            raise ValueError(
                f'PairedVSRDBRandomCrop: LR frames of {results["key"]} ({height}, {width}) are smaller than '
                f'gt_patch_size/scale = {lr_size}'
            )
        streams = [s for s in LR_STREAMS if s in results]
        lrs = [frame for s in streams for frame in results[s]]
        gts, lrs = paired_random_crop(list(results['gt']), lrs, self.gt_patch_size, self.scale, results['key'])
        results['gt'] = gts if isinstance(gts, list) else [gts]  # basicsr unwraps one-element lists
        lrs = lrs if isinstance(lrs, list) else [lrs]
        start = 0
        for stream in streams:
            count = len(results[stream])
            results[stream] = lrs[start : start + count]
            start += count
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(gt_patch_size={self.gt_patch_size}, scale={self.scale})'


@TRANSFORMS.register_module()
class VSRDBRandomFlip(BaseTransform):
    """Random horizontal flip, vertical flip and transpose (each with probability 0.5) of all frames of a window.

    The flow vectors are transformed with the frames: a horizontal flip negates x, a vertical flip negates y,
    a transpose swaps x and y (the plugin's ``transform_frames``).

    Args:
        hflip (bool): Allow horizontal flips. Default: True.
        vflip (bool): Allow vertical flips. Default: True.
        transpose (bool): Allow transposes (BasicSR's ``use_rot``). Default: False.
    """

    def __init__(self, hflip: bool = True, vflip: bool = True, transpose: bool = False) -> None:
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose

    def transform(self, results: dict) -> dict:
        hflip = self.hflip and random.random() < 0.5
        vflip = self.vflip and random.random() < 0.5
        transpose = self.transpose and random.random() < 0.5
        t = len(results['lq'])
        lrs = results['lq'] + results.get('lq_sharp', [])
        lrs, results['gt'], flows = transform_frames(
            lrs, results['gt'], results.get('flow', []), hflip, vflip, transpose
        )
        results['lq'] = lrs[:t]
        if 'lq_sharp' in results:
            results['lq_sharp'] = lrs[t:]
        if 'flow' in results:
            results['flow'] = flows
        results['flip'] = (hflip, vflip, transpose)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(hflip={self.hflip}, vflip={self.vflip}, transpose={self.transpose})'
