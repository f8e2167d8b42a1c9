"""Packs a loaded VSRDB window into the Runner's ``inputs`` / ``data_samples`` form."""

from __future__ import annotations

from fmanet_plugin.mm.registry import TRANSFORMS

import numpy as np
import torch
from basicsr.utils import img2tensor
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

META_KEYS = ('key', 'clip', 'frame', 'frame_idx', 'num_frames')


def _rgb_tensor(frames: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """BGR (h, w, 3) frame(s) -> RGB float tensor (c, h, w), or (t, c, h, w) for a list."""
    if isinstance(frames, np.ndarray):
        return img2tensor(frames, bgr2rgb=True, float32=True)
    return torch.stack(img2tensor(list(frames), bgr2rgb=True, float32=True))


@TRANSFORMS.register_module()
class PackVSRDBInputs(BaseTransform):
    """``inputs``: the blurry LR window (t, c, h, w); ``data_samples``: a ``BaseDataElement`` with the targets.

    Targets (when loaded): ``gt`` (t, c, s*h, s*w) training window or (c, s*h, s*w) test centre frame,
    ``lq_sharp`` (t, c, h, w), ``flow`` (t, 2, h, w). Metainfo: ``key``, ``clip``, ``frame``, ``frame_idx``,
    ``num_frames``. Images are RGB float32 in [0, 1] (the same tensors as BasicSR's VSRDB datasets).
    """

    def transform(self, results: dict) -> dict:
        sample = BaseDataElement(metainfo={k: results[k] for k in META_KEYS if k in results})
        for key in ('gt', 'lq_sharp'):
            if key in results:
                sample.set_data({key: _rgb_tensor(results[key])})
        if 'flow' in results:
            sample.flow = torch.from_numpy(np.stack(results['flow']).transpose(0, 3, 1, 2).copy())
        return {'inputs': _rgb_tensor(results['lq']), 'data_samples': sample}
