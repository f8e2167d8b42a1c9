"""Temporal consistency tOF as an mmengine metric: per consecutive frame pair of each clip, pooled over all pairs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from fmanet_plugin.metrics.tof_metric import mean_per_clip, to_grey_uint8, tof_per_pair
from fmanet_plugin.mm.image_metrics import to_images
from fmanet_plugin.mm.registry import METRICS

from mmengine.evaluator import BaseMetric


@METRICS.register_module()
class TOF(BaseMetric):
    """tOF (lower is better): per consecutive pair of restored frames of each clip, then the mean over all pairs
    of all clips (the released protocol, as ``fmanet_plugin.metrics.clip_eval`` for the BasicSR validation).

    Frames are kept as 8-bit grey images (what ``calculate_tof`` computes its flows on) until every rank's
    results are gathered; items are ordered by ``clip`` and ``frame_idx`` metainfo. Clips with one frame are
    left out.

    Args:
        collect_device (str): ``'cpu'`` or ``'gpu'``. Default: ``'cpu'``.
        prefix (str | None): Prefix of the reported name. Default: None.
    """

    default_prefix = ''  # reported as tOF

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'clip' not in sample or 'frame_idx' not in sample:
                raise KeyError('TOF: data samples need clip and frame_idx metainfo (PackVSRDBInputs sets them)')
            pred, gt = to_images(sample)
            self.results.append((sample['clip'], int(sample['frame_idx']), to_grey_uint8(pred), to_grey_uint8(gt)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        clips = defaultdict(dict)
        for clip, frame_idx, pred, gt in results:
            clips[clip][frame_idx] = (pred, gt)  # a frame gathered twice (sampler padding) counts once
        pairs = {}
        for clip, frames in clips.items():
            if len(frames) >= 2:
                ordered = [frames[i] for i in sorted(frames)]
                pairs[clip] = tof_per_pair([p for p, _ in ordered], [g for _, g in ordered])
        if not pairs:
            raise ValueError('TOF: needs a clip with at least 2 validation frames')
        return {'tOF': mean_per_clip(pairs)[1]}
