"""Reads a VSRDB window (blurry LR, sharp HR, sharp LR, flow) for one dataset item, with BasicSR's reader."""

from __future__ import annotations

import random

from fmanet_plugin.data.vsrdb_dataset import VSRDBReader, check_scale
from fmanet_plugin.mm.registry import TRANSFORMS

import numpy as np
from basicsr.data.data_util import generate_frame_indices
from mmcv.transforms import BaseTransform

WINDOWS = ('random', 'replicate')


@TRANSFORMS.register_module()
class LoadVSRDBFrames(BaseTransform):
    """Loads the frames of one ``fmanet_plugin.VSRDBDataset`` item.

    ``window='random'`` (training, as BasicSR's ``VSRDBDataset``): a random centre whose whole window lies in the
    item's clip; reads ``lq``, ``lq_sharp`` and ``gt`` for every frame of the window and ``flow`` (centre to each
    frame, zero at the centre) when the dataset has a flow root. ``window='replicate'`` (test, as
    ``VSRDBTestDataset``): the window centred at the item's frame, end frames repeated; reads ``lq`` and the centre
    ``gt`` when available.

    Args:
        window (str): ``'random'`` or ``'replicate'``. Default: ``'random'``.
        scale (int): HR / LR size ratio (checked). Default: 4.

    Adds ``lq``, ``lq_sharp`` (lists of (h, w, 3) BGR float32 in [0, 1]), ``gt`` (list of (s*h, s*w, 3); test:
    one array), ``flow`` (list of (h, w, 2) float32 (x, y)), ``key`` (``'clip/frame'``), ``frame``,
    ``num_frames``; test also sets ``frame_idx``.
    """

    def __init__(self, window: str = 'random', scale: int = 4) -> None:
        if window not in WINDOWS:
            raise ValueError(f'LoadVSRDBFrames: window must be one of {WINDOWS}, got {window!r}')
        self.window = window
        self.scale = scale
        self._readers: dict = {}

    def _reader(self, results: dict) -> VSRDBReader:
        # items are unpickled per access: keep one reader (and its file client) per distinct configuration
        key = (tuple(sorted(results['roots'].items())), repr(sorted(results['io_backend'].items())))
        if key not in self._readers:
            self._readers[key] = VSRDBReader(
                results['roots'], results['io_backend'], results['filename_ext'], type(self).__name__
            )
        return self._readers[key]

    def transform(self, results: dict) -> dict:
        reader, name = self._reader(results), type(self).__name__
        clip, stems, num_frame = results['clip'], results['stems'], results['num_frame']
        radius = num_frame // 2
        if self.window == 'random':
            centre = random.randint(radius, len(stems) - 1 - radius)
            window = stems[centre - radius : centre + radius + 1]
        else:
            centre = results['frame_idx']
            window = [stems[i] for i in generate_frame_indices(centre, len(stems), num_frame, padding='replicate')]
        results.update(key=f'{clip}/{stems[centre]}', frame=stems[centre], frame_idx=centre, num_frames=len(stems))
        results['lq'] = [reader.image('lq', clip, s) for s in window]
        lr_shape = results['lq'][0].shape
        if self.window == 'replicate':
            if 'gt' in reader.roots:
                results['gt'] = reader.image('gt', clip, stems[centre])
                check_scale(results['lq'][radius], results['gt'], self.scale, f'{clip}/{stems[centre]}', name)
            return results
        results['lq_sharp'] = [reader.image('lq_sharp', clip, s) for s in window]
        results['gt'] = [reader.image('gt', clip, s) for s in window]
        for stem, lq, lq_sharp, gt in zip(window, results['lq'], results['lq_sharp'], results['gt']):
            if lq.shape != lr_shape or lq_sharp.shape != lr_shape:
                raise ValueError(
                    f'{name}: LR frames of {clip}/{stem} have sizes {lq.shape[:2]} (lq), {lq_sharp.shape[:2]} '
                    f'(lq_sharp), expected {lr_shape[:2]} like {clip}/{window[0]}'
                )
            check_scale(lq, gt, self.scale, f'{clip}/{stem}', name)
        if 'flow' in reader.roots:
            results['flow'] = [
                np.zeros((*lr_shape[:2], 2), np.float32)
                if i == radius
                else reader.flow(clip, window[radius], s, lr_shape[:2])
                for i, s in enumerate(window)
            ]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(window={self.window!r}, scale={self.scale})'
