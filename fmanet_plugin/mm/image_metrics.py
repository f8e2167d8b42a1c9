"""Per-frame PSNR and SSIM as mmengine metrics (basicsr's ``calculate_psnr`` / ``calculate_ssim``)."""

from __future__ import annotations

from collections.abc import Sequence

from fmanet_plugin.mm.registry import METRICS

import numpy as np
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from mmengine.evaluator import BaseMetric


def to_images(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """A predicted data sample's ``pred`` and ``gt`` (c, h, w) RGB tensors in [0, 1] as 8-bit BGR images, the
    conversion (``tensor2img``: clamp, x255, round) of BasicSR's validation."""
    if 'gt' not in sample:
        raise KeyError(f"metric: data sample {sample.get('key', '?')} has no gt (configure the dataset's gt root)")
    return tensor2img(sample['pred']), tensor2img(sample['gt'])


class _FrameMetric(BaseMetric):
    """Mean of a per-frame image metric over all frames.

    Args:
        crop_border (int): Pixels cut from every border before the metric. Default: 0.
        test_y_channel (bool): Compute on the Y channel of YCbCr. Default: False.
        collect_device (str): ``'cpu'`` or ``'gpu'`` (result gathering across ranks). Default: ``'cpu'``.
        prefix (str | None): Prefix of the reported name. Default: None.
    """

    metric_name = ''
    default_prefix = ''  # names are reported as PSNR / SSIM

    def __init__(
        self, crop_border: int = 0, test_y_channel: bool = False, collect_device: str = 'cpu', prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.crop_border = crop_border
        self.test_y_channel = test_y_channel

    def score(self, pred: np.ndarray, gt: np.ndarray) -> float:
        raise NotImplementedError

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(self.score(*to_images(sample)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        return {self.metric_name: float(np.mean(results))}


@METRICS.register_module()
class PSNR(_FrameMetric):
    """Mean PSNR (dB) over frames (basicsr's ``calculate_psnr``); see :class:`_FrameMetric` for the arguments."""

    metric_name = 'PSNR'

    def score(self, pred: np.ndarray, gt: np.ndarray) -> float:
        return calculate_psnr(pred, gt, self.crop_border, test_y_channel=self.test_y_channel)


@METRICS.register_module()
class SSIM(_FrameMetric):
    """Mean SSIM over frames (basicsr's ``calculate_ssim``); see :class:`_FrameMetric` for the arguments."""

    metric_name = 'SSIM'

    def score(self, pred: np.ndarray, gt: np.ndarray) -> float:
        return calculate_ssim(pred, gt, self.crop_border, test_y_channel=self.test_y_channel)
