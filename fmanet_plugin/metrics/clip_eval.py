"""Scoring restored clips frame by frame: per-frame metrics, tOF per consecutive pair, per-clip and pooled means.

The one evaluation loop of the package (``tools/test.py``, ``tools/benchmark.py`` and ``FMANetModel``'s
validation feed it). Protocol (``../shared/SPEC.md``, "Evaluation protocol"): frames are 8-bit BGR images;
the released metrics are RGB PSNR and Y PSNR with a 4-pixel border cropped, SSIM with the same border (basicsr's
``calculate_psnr`` / ``calculate_ssim``) and tOF over consecutive pairs (:mod:`fmanet_plugin.metrics.tof_metric`).
:meth:`ClipEvaluator.summarise` leaves ``skip`` frames out at each clip end (a tOF pair counts when both its frames
are kept); a clip's value is the mean over its frames (pairs), the average the mean over all frames (pairs) of all
clips, as in the released test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from fmanet_plugin.metrics.tof_metric import mean_per_clip, to_grey_uint8, tof_pair

import numpy as np
from basicsr.metrics import calculate_psnr, calculate_ssim

FrameMetric = Callable[[np.ndarray, np.ndarray], float]


def released_frame_metrics(crop_border: int = 4) -> dict[str, FrameMetric]:
    """The released test's per-frame metrics: ``psnr_rgb``, ``psnr_y`` and ``ssim`` with ``crop_border``."""
    return {
        'psnr_rgb': partial(calculate_psnr, crop_border=crop_border),
        'psnr_y': partial(calculate_psnr, crop_border=crop_border, test_y_channel=True),
        'ssim': partial(calculate_ssim, crop_border=crop_border),
    }


@dataclass
class ClipRecord:
    """Scores of one clip: ``scores[name][i]`` for frame ``i``; for tOF, entry ``i`` is the pair ``(i-1, i)``."""

    num_frames: int
    stems: dict[int, str] = field(default_factory=dict)
    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    greys: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (gt, output), until tOF


class ClipEvaluator:
    """Accumulates restored frames of clips, in any order, and scores them.

    Args:
        frame_metrics (Mapping[str, Callable] | None): Name -> ``metric(output, gt)`` on uint8 BGR images.
            Default: :func:`released_frame_metrics` with ``crop_border``.
        crop_border (int): Border of the default metrics. Default: 4.
        tof (str | None): Name under which tOF is reported; ``None`` skips it. Default: ``'tof'``.
    """

    def __init__(
        self, frame_metrics: Mapping[str, FrameMetric] | None = None, crop_border: int = 4, tof: str | None = 'tof'
    ) -> None:
        self.frame_metrics = dict(released_frame_metrics(crop_border) if frame_metrics is None else frame_metrics)
        self.tof = tof
        self.names = (*self.frame_metrics, *([tof] if tof else []))
        self.records: dict[str, ClipRecord] = {}

    def add(
        self, clip: str, frame_idx: int, num_frames: int, stem: str, output: np.ndarray, gt: np.ndarray | None
    ) -> None:
        """Score one restored frame (uint8 BGR (h, w, 3)) against its ground truth (``None``: record it only).

        A clip's tOF is computed as soon as all its frames are in (the grey frames are released then).
        """
        record = self.records.setdefault(clip, ClipRecord(num_frames, scores={n: {} for n in self.names}))
        record.stems[frame_idx] = stem
        if gt is None:
            return
        for name, metric in self.frame_metrics.items():
            record.scores[name][frame_idx] = float(metric(output, gt))
        if self.tof:
            record.greys[frame_idx] = (to_grey_uint8(gt), to_grey_uint8(output))
            if len(record.greys) == record.num_frames:
                self._score_tof(record)

    def finish(self) -> list[str]:
        """Score the tOF of clips that did not get all their frames; returns ``'clip: restored k of n frames'``."""
        incomplete = []
        for clip, record in self.records.items():
            if len(record.stems) != record.num_frames:
                incomplete.append(f'{clip}: restored {len(record.stems)} of {record.num_frames} frames')
            if record.greys:
                self._score_tof(record)
        return incomplete

    def _score_tof(self, record: ClipRecord) -> None:
        for i in sorted(record.greys):
            if i - 1 in record.greys:
                (gt_prev, out_prev), (gt_cur, out_cur) = record.greys[i - 1], record.greys[i]
                record.scores[self.tof][i] = tof_pair(gt_prev, gt_cur, out_prev, out_cur)
        record.greys.clear()

    @property
    def has_scores(self) -> bool:
        """Whether any frame was scored (i.e. had a ground truth)."""
        return any(values for record in self.records.values() for values in record.scores.values())

    def summarise(self, skip: int = 0) -> tuple[dict[str, dict], dict]:
        """Per-clip and average metrics with ``skip`` frames left out at each clip end (call :meth:`finish` first).

        Returns:
            tuple[dict[str, dict], dict]: Clip -> ``{'frames': kept scored frames, name: mean}`` (NaN when a clip
            has no value), and the same for the average (means over all frames / pairs of all clips).
        """
        values = {name: {} for name in self.names}
        counts = {}
        for clip, record in self.records.items():
            first_scored = next(iter(record.scores.values()), {})
            counts[clip] = sum(1 for i in range(skip, record.num_frames - skip) if i in first_scored)
            for name in self.names:
                per_frame = record.scores[name]
                first = skip + 1 if name == self.tof else skip  # a pair counts when both its frames are kept
                values[name][clip] = [per_frame[i] for i in range(first, record.num_frames - skip) if i in per_frame]
        rows = {clip: {'frames': counts[clip]} for clip in self.records}
        average = {'frames': sum(counts.values())}
        for name in self.names:
            per_clip, overall = mean_per_clip(values[name])
            for clip in self.records:
                rows[clip][name] = per_clip.get(clip, float('nan'))
            average[name] = overall
        return rows, average
