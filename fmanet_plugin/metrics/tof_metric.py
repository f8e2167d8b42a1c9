"""Temporal consistency tOF: how much the motion of a restored video differs from the motion of its ground truth.

Protocol (released FMA-Net test, ``../shared/SPEC.md`` "Evaluation protocol"), as implemented here:

* Each frame is converted to 8-bit grey (``cv2.COLOR_BGR2GRAY``; float inputs in [0, 255] are rounded and clipped
  to uint8 first, as the released test works on saved 8-bit images).
* For every pair of consecutive frames ``(i-1, i)`` a dense Farneback flow (OpenCV, parameters
  ``0.5, 3, 15, 3, 5, 1.2, 0``) is computed on the **full** grey frames of the ground truth and of the output.
* Both flows are centre-cropped: per dimension the crop is the largest multiple of 32 that removes **at least
  16 pixels in total** (e.g. 720 -> 704, 1280 -> 1248, 100 -> 64), starting at ``(size - crop) // 2``.
  "Leaving at least 16 px" is read as at least 16 px cut away, split between both sides.
* The pair's tOF is the mean over the crop of the per-pixel L2 norm of the flow difference; a sequence's tOF is
  the mean over its pairs. Across clips the released test averages over all pairs (see :func:`mean_per_clip`).

The measure is symmetric in its two sequences, zero for identical sequences, in pixels of flow per frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)
CROP_MULTIPLE = 32
CROP_MIN_REMOVED = 16


def tof_crop(size: int) -> tuple[int, int]:
    """Centre crop of one dimension for tOF.

    Args:
        size (int): Frame height or width in pixels.

    Returns:
        tuple[int, int]: ``(start, length)``: ``length`` is the largest multiple of 32 with
        ``length <= size - 16``, ``start = (size - length) // 2``.

    Raises:
        ValueError: If ``size < 48`` (no such crop exists).
    """
    length = (size - CROP_MIN_REMOVED) // CROP_MULTIPLE * CROP_MULTIPLE
    if length <= 0:
        raise ValueError(
            f'tOF: frames must be at least {CROP_MULTIPLE + CROP_MIN_REMOVED} px high and wide '
            f'(a centre crop of a multiple of {CROP_MULTIPLE} px leaving {CROP_MIN_REMOVED} px), got {size}'
        )
    return (size - length) // 2, length


def to_grey_uint8(img: np.ndarray, input_order: str = 'HWC') -> np.ndarray:
    """Convert one BGR (or grey) frame in [0, 255] to an 8-bit grey image.

    Args:
        img (ndarray): (h, w, c) for ``input_order='HWC'``, (c, h, w) for ``'CHW'``, or (h, w); ``c`` is 1 or 3
            (BGR); uint8 or float in [0, 255].
        input_order (str): ``'HWC'`` or ``'CHW'``. Default: ``'HWC'``.

    Returns:
        ndarray: (h, w) uint8.
    """
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f"tOF: input_order must be 'HWC' or 'CHW', got {input_order!r}")
    img = np.asarray(img)
    if img.ndim == 3 and input_order == 'CHW':
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f'tOF: expected a grey or 3-channel BGR frame in {input_order} order, got shape {img.shape}')
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64)), 0, 255).astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img


def farneback_flow(prev_grey: np.ndarray, next_grey: np.ndarray) -> np.ndarray:
    """Dense Farneback flow from ``prev_grey`` to ``next_grey`` with the protocol's parameters.

    Args:
        prev_grey (ndarray): (h, w) uint8.
        next_grey (ndarray): (h, w) uint8.

    Returns:
        ndarray: (h, w, 2) float32 flow (x, y) in pixels.
    """
    return cv2.calcOpticalFlowFarneback(prev_grey, next_grey, None, *FARNEBACK_PARAMS)


def tof_pair(gt_prev: np.ndarray, gt_next: np.ndarray, out_prev: np.ndarray, out_next: np.ndarray) -> float:
    """tOF of one pair of consecutive frames (all four (h, w) uint8 grey images).

    Returns:
        float: Mean over the centre crop of ``|flow(gt_prev, gt_next) - flow(out_prev, out_next)|_2``.
    """
    shapes = {img.shape for img in (gt_prev, gt_next, out_prev, out_next)}
    if len(shapes) != 1:
        raise ValueError(f'tOF: all four frames of a pair must have the same shape, got {sorted(shapes)}')
    (y0, h), (x0, w) = tof_crop(gt_prev.shape[0]), tof_crop(gt_prev.shape[1])
    diff = farneback_flow(gt_prev, gt_next) - farneback_flow(out_prev, out_next)
    diff = diff[y0 : y0 + h, x0 : x0 + w].astype(np.float64)
    return float(np.sqrt((diff**2).sum(axis=-1)).mean())


def tof_per_pair(img: Sequence[np.ndarray], img2: Sequence[np.ndarray], input_order: str = 'HWC') -> list[float]:
    """tOF of every consecutive pair of two aligned sequences.

    Args:
        img (Sequence[ndarray]): Output frames (list, or an array with frames on the first axis), BGR or grey,
            uint8 or float in [0, 255], each in ``input_order``.
        img2 (Sequence[ndarray]): Ground-truth frames, same length and frame shape.
        input_order (str): ``'HWC'`` or ``'CHW'`` per frame. Default: ``'HWC'``.

    Returns:
        list[float]: ``len(img) - 1`` values; entry ``i`` is the pair ``(i, i+1)``.
    """
    if len(img) != len(img2):
        raise ValueError(
            f'tOF: output and ground truth must have the same number of frames, got {len(img)} vs {len(img2)}'
        )
    if len(img) < 2:
        raise ValueError(f'tOF: needs at least 2 frames (one consecutive pair), got {len(img)}')
    out_grey = [to_grey_uint8(frame, input_order) for frame in img]
    gt_grey = [to_grey_uint8(frame, input_order) for frame in img2]
    return [tof_pair(gt_grey[i - 1], gt_grey[i], out_grey[i - 1], out_grey[i]) for i in range(1, len(img))]


@METRIC_REGISTRY.register()
def calculate_tof(img: Sequence[np.ndarray], img2: Sequence[np.ndarray], input_order: str = 'HWC', **kwargs) -> float:
    """Temporal consistency tOF of a restored sequence against its ground truth (lower is better).

    BasicSR metric convention: ``img`` is the output, ``img2`` the ground truth, images in [0, 255], BGR.
    Unlike the per-image metrics, both arguments are **sequences** of consecutive frames of one clip.
    The value is symmetric in ``img`` and ``img2``.

    Args:
        img (Sequence[ndarray]): Output frames, each (h, w, c) ('HWC') or (c, h, w) ('CHW'), or (h, w).
        img2 (Sequence[ndarray]): Ground-truth frames of the same shapes.
        input_order (str): ``'HWC'`` or ``'CHW'``. Default: ``'HWC'``.
        **kwargs: Ignored (e.g. ``crop_border`` passed to every metric by BasicSR; tOF uses its own crop).

    Returns:
        float: Mean tOF over the ``len(img) - 1`` consecutive pairs.
    """
    return float(np.mean(tof_per_pair(img, img2, input_order)))


def mean_per_clip(values: Mapping[str, Sequence[float]]) -> tuple[dict[str, float], float]:
    """Per-clip means and the overall mean over all values (the released test's "total average").

    The overall mean weights clips by their number of values (frames, or pairs for tOF); with equally long
    clips (REDS4) it equals the mean of the clip means. Empty clips are left out.

    Args:
        values (Mapping[str, Sequence[float]]): Clip name -> per-frame (or per-pair) values.

    Returns:
        tuple[dict[str, float], float]: Clip -> mean, and the overall mean (NaN if there is no value).
    """
    per_clip = {clip: float(np.mean(vals)) for clip, vals in values.items() if len(vals)}
    pooled = [v for vals in values.values() for v in vals]
    return per_clip, float(np.mean(pooled)) if pooled else float('nan')
